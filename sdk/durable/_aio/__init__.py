"""The async face's machinery: the driver of core operations, the grpc.aio client and its
Session stream, workflows as tasks, and the worker. Public names are in `durable.aio`."""
