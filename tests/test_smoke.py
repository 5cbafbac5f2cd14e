from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc


def test_start_workflow_creates_pending_workflow(stub: pb_grpc.CoordinatorServiceStub) -> None:
    reply = stub.StartWorkflow(pb.StartWorkflowRequest(name="smoke"), timeout=10)
    assert reply.created
    assert reply.workflow.status == pb.WORKFLOW_STATUS_PENDING
