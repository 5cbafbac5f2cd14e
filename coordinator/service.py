"""The CoordinatorService servicer: validate the request, call the store, build the reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from coordinator import validation, wire
from coordinator.auth import Authenticator
from coordinator.config import Config
from coordinator.edge import Context, streaming, unary
from coordinator.errors import InvalidArgument
from coordinator.notify import Hub, event_topic, workflow_topic
from coordinator.store import events, steps, workflows
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class CoordinatorService(pb_grpc.CoordinatorServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, hub: Hub, config: Config) -> None:
        self._pool = pool
        self._hub = hub
        self._config = config
        self._auth = Authenticator(config.tokens)

    def _namespace(self, context: Context) -> str:
        """The caller's namespace, from its bearer token; raises Unauthenticated."""
        return self._auth.namespace(context.invocation_metadata())

    def _timeout(self, present: bool, value: duration_pb2.Duration) -> float:
        return validation.timeout(present, value, "timeout", self._config.max_wait_seconds)

    @unary
    async def StartWorkflow(
        self, request: pb.StartWorkflowRequest, context: Context
    ) -> pb.StartWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = (
            validation.workflow_id(request.workflow_id)
            if request.workflow_id
            else str(uuid.uuid4())
        )
        name = validation.name(request.name, "name")
        input = (
            validation.payload(request.input, "input", self._config.max_payload_bytes)
            if request.HasField("input")
            else None
        )
        record, created = await workflows.start(self._pool, ns, workflow_id, name, input)
        response = pb.StartWorkflowResponse(workflow=wire.workflow(record), created=created)
        if not created and not record.status.finished:
            history, truncated = await steps.page(
                self._pool,
                ns,
                workflow_id,
                after_step_id=0,
                limit=validation.MAX_STEP_ID,
                byte_budget=self._config.history_budget_bytes,
            )
            response.history.extend(wire.step(s) for s in history)
            response.history_truncated = truncated
        return response

    @unary
    async def RunStep(self, request: pb.RunStepRequest, context: Context) -> pb.RunStepResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        name = validation.name(request.name, "name")
        outcome = validation.outcome(
            request.WhichOneof("outcome"),
            request.output,
            request.error,
            "outcome",
            self._config.max_payload_bytes,
        )
        record, already = await steps.record(self._pool, ns, workflow_id, step_id, name, outcome)
        return pb.RunStepResponse(step=wire.step(record), already_recorded=already)

    @unary
    async def SetEvent(self, request: pb.SetEventRequest, context: Context) -> pb.SetEventResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        key = validation.name(request.key, "key")
        if not request.HasField("value"):
            raise InvalidArgument("value", "required")
        value = validation.payload(request.value, "value", self._config.max_payload_bytes)
        record, version = await events.set_event(self._pool, ns, workflow_id, step_id, key, value)
        if version is None:
            return pb.SetEventResponse(step=wire.step(record), already_recorded=True)
        # Wake this process's readers now; other coordinators hear the NOTIFY.
        self._hub.publish(event_topic(ns, workflow_id, key), version)
        return pb.SetEventResponse(step=wire.step(record), version=version)

    @streaming
    async def GetEvent(
        self, request: pb.GetEventRequest, context: Context
    ) -> AsyncIterator[pb.GetEventResponse]:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        key = validation.name(request.key, "key")
        timeout = self._timeout(request.HasField("timeout"), request.timeout)
        if request.after_version < 0:
            raise InvalidArgument("after_version", "must not be negative")
        follow = request.follow
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        after = request.after_version
        # A resuming follower must not skip values, so it reads history; a fresh reader
        # starts from the latest value and reads history from there on.
        from_history = follow and after > 0
        topics = (event_topic(ns, workflow_id, key), workflow_topic(ns, workflow_id))
        with self._hub.subscribe(*topics) as waiter:
            while True:
                waiter.arm()
                seen = await events.read(
                    self._pool, ns, workflow_id, key, after, from_history=from_history
                )
                for value in seen.values:
                    yield wire.event(value)
                    after = waiter.seen_version = value.version
                if seen.values and not follow:
                    return
                from_history = follow
                if seen.has_more:
                    continue
                if seen.status is not None and seen.status.finished:
                    # Values are only set while PENDING, and this snapshot saw them all.
                    yield pb.GetEventResponse(
                        workflow_finished=pb.WorkflowFinished(status=wire.status(seen.status))
                    )
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    yield pb.GetEventResponse(timed_out=pb.TimedOut())
                    return
                await waiter.wait(remaining)

    @unary
    async def FinishWorkflow(
        self, request: pb.FinishWorkflowRequest, context: Context
    ) -> pb.FinishWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        result = validation.outcome(
            request.WhichOneof("result"),
            request.output,
            request.error,
            "result",
            self._config.max_payload_bytes,
        )
        record, already = await workflows.finish(self._pool, ns, workflow_id, result)
        if not already:
            self._hub.publish(workflow_topic(ns, workflow_id))
        return pb.FinishWorkflowResponse(workflow=wire.workflow(record), already_finished=already)

    @unary
    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: Context
    ) -> pb.GetWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        record = await workflows.get(self._pool, ns, workflow_id)
        return pb.GetWorkflowResponse(workflow=wire.workflow(record))

    @unary
    async def AwaitWorkflow(
        self, request: pb.AwaitWorkflowRequest, context: Context
    ) -> pb.AwaitWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        timeout = self._timeout(request.HasField("timeout"), request.timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._hub.subscribe(workflow_topic(ns, workflow_id)) as waiter:
            while True:
                waiter.arm()
                record = await workflows.get(self._pool, ns, workflow_id)
                remaining = deadline - loop.time()
                if record.status.finished or remaining <= 0:
                    return pb.AwaitWorkflowResponse(
                        workflow=wire.workflow(record), timed_out=not record.status.finished
                    )
                await waiter.wait(remaining)

    @unary
    async def ListSteps(
        self, request: pb.ListStepsRequest, context: Context
    ) -> pb.ListStepsResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        if request.after_step_id < 0:
            raise InvalidArgument("after_step_id", "must not be negative")
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0-{MAX_PAGE_SIZE}")
        await workflows.get(self._pool, ns, workflow_id)  # NOT_FOUND for an unknown workflow
        found, has_more = await steps.page(
            self._pool,
            ns,
            workflow_id,
            after_step_id=request.after_step_id,
            limit=request.page_size or DEFAULT_PAGE_SIZE,
            byte_budget=self._config.history_budget_bytes,
        )
        return pb.ListStepsResponse(steps=[wire.step(s) for s in found], has_more=has_more)
