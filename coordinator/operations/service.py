"""The OperationsService servicer: each RPC authenticates the caller's namespace and hands
the request to the module of its concern (retention.py, bulk.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from psycopg_pool import AsyncConnectionPool

from coordinator.auth import Authenticator
from coordinator.config import Config
from coordinator.edge import Context, streaming, unary
from coordinator.notify import Hub
from coordinator.operations import bulk, retention
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc


class OperationsService(opb_grpc.OperationsServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, hub: Hub, config: Config) -> None:
        self.pool = pool
        self.hub = hub
        self.config = config
        self._auth = Authenticator(config.tokens)

    def _namespace(self, context: Context) -> str:
        return self._auth.namespace(context.invocation_metadata())

    @unary
    async def SetRetention(
        self, request: opb.SetRetentionRequest, context: Context
    ) -> opb.SetRetentionResponse:
        return await retention.set_retention(self, self._namespace(context), request)

    @unary
    async def GetRetention(
        self, request: opb.GetRetentionRequest, context: Context
    ) -> opb.GetRetentionResponse:
        return await retention.get_retention(self, self._namespace(context), request)

    @unary
    async def DeleteWorkflow(
        self, request: opb.DeleteWorkflowRequest, context: Context
    ) -> opb.DeleteWorkflowResponse:
        return await retention.delete_workflow(self, self._namespace(context), request)

    @streaming
    async def CancelWorkflows(
        self, request: opb.CancelWorkflowsRequest, context: Context
    ) -> AsyncIterator[opb.CancelWorkflowsResponse]:
        async for progress in bulk.cancel_workflows(self, self._namespace(context), request):
            yield progress

    @streaming
    async def ResumeWorkflows(
        self, request: opb.ResumeWorkflowsRequest, context: Context
    ) -> AsyncIterator[opb.ResumeWorkflowsResponse]:
        async for progress in bulk.resume_workflows(self, self._namespace(context), request):
            yield progress

    @unary
    async def PauseQueue(
        self, request: opb.PauseQueueRequest, context: Context
    ) -> opb.PauseQueueResponse:
        return await bulk.pause_queue(self, self._namespace(context), request)

    @unary
    async def ResumeQueue(
        self, request: opb.ResumeQueueRequest, context: Context
    ) -> opb.ResumeQueueResponse:
        return await bulk.resume_queue(self, self._namespace(context), request)
