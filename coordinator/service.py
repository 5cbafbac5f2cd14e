"""The CoordinatorService servicer: validate the request, call the store, build the reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from coordinator import metrics, validation, wire
from coordinator.auth import Authenticator
from coordinator.config import Config
from coordinator.edge import Context, streaming, unary
from coordinator.errors import InvalidArgument
from coordinator.notify import Hub, event_topic, work_topic, workflow_topic
from coordinator.store import batched, events, management, steps, workers, workflows
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Longest workflow timeout accepted (a year).
MAX_TIMEOUT = 365 * 24 * 3600.0
DEFAULT_LEASE_SECONDS = 10.0
MAX_WORKFLOW_NAMES = 1000
MAX_CLAIM = 100
DEFAULT_POLL_SECONDS = 30.0


class CoordinatorService(pb_grpc.CoordinatorServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, hub: Hub, config: Config) -> None:
        self._pool = pool
        self._hub = hub
        self._config = config
        self._auth = Authenticator(config.tokens)
        # Group commit: RunStep and SetEvent requests that arrive while earlier ones are
        # being committed share the next transaction (coordinator/store/group_commit.py).
        max_batch = config.group_commit_max_batch if config.group_commit else 1
        self._step_writer = batched.StepWriter(
            pool, max_batch=max_batch, observe=metrics.GROUP_COMMIT_BATCH.labels("RunStep").observe
        )
        self._event_writer = batched.EventWriter(
            pool, max_batch=max_batch, observe=metrics.GROUP_COMMIT_BATCH.labels("SetEvent").observe
        )

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
        executor = validation.executor_id(request.executor_id)
        timeout = None
        if request.HasField("timeout"):
            seconds = validation.duration(
                True, request.timeout, "timeout", default=0, minimum=0.001, maximum=MAX_TIMEOUT
            )
            timeout = timedelta(seconds=seconds)
        record, created = await workflows.start(
            self._pool, ns, workflow_id, name, input, executor_id=executor, timeout=timeout
        )
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
        if request.attempts < 0:
            raise InvalidArgument("attempts", "must not be negative")
        record, already = await self._step_writer.record(
            batched.StepWrite(
                ns,
                workflow_id,
                step_id,
                name,
                outcome,
                executor_id=validation.executor_id(request.executor_id),
                started_at=validation.timestamp(
                    request.HasField("start_time"), request.start_time, "start_time"
                ),
                attempts=request.attempts or 1,
            )
        )
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
        record, version = await self._event_writer.set(
            batched.EventWrite(
                ns,
                workflow_id,
                step_id,
                key,
                value,
                executor_id=validation.executor_id(request.executor_id),
            )
        )
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
        record, already = await workflows.finish(
            self._pool,
            ns,
            workflow_id,
            result,
            executor_id=validation.executor_id(request.executor_id),
        )
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
            with_failed_attempts=True,
        )
        return pb.ListStepsResponse(steps=[wire.step(s) for s in found], has_more=has_more)

    @unary
    async def RecordStepAttempt(
        self, request: pb.RecordStepAttemptRequest, context: Context
    ) -> pb.RecordStepAttemptResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        name = validation.name(request.name, "name")
        if request.attempt <= 0:
            raise InvalidArgument("attempt", "must be 1 or greater")
        if not request.HasField("error"):
            raise InvalidArgument("error", "required")
        error = validation.failure(request.error, "error", self._config.max_payload_bytes)
        await steps.record_attempt(
            self._pool,
            ns,
            workflow_id,
            step_id,
            name,
            request.attempt,
            error,
            executor_id=validation.executor_id(request.executor_id),
            started_at=validation.timestamp(
                request.HasField("start_time"), request.start_time, "start_time"
            ),
            ended_at=validation.timestamp(
                request.HasField("end_time"), request.end_time, "end_time"
            ),
        )
        return pb.RecordStepAttemptResponse()

    @unary
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        ns = self._namespace(context)
        executor = validation.workflow_id(request.executor_id, "executor_id")
        worker_name = (
            validation.name(request.worker_name, "worker_name") if request.worker_name else ""
        )
        if len(request.workflow_names) > MAX_WORKFLOW_NAMES:
            raise InvalidArgument("workflow_names", f"more than {MAX_WORKFLOW_NAMES}")
        names = [validation.name(n, "workflow_names") for n in request.workflow_names]
        lease = validation.duration(
            request.HasField("lease"),
            request.lease,
            "lease",
            default=DEFAULT_LEASE_SECONDS,
            minimum=1.0,
            maximum=600.0,
        )
        expires, took_over = await workers.heartbeat(
            self._pool, ns, executor, worker_name, names, timedelta(seconds=lease)
        )
        if took_over:
            self._hub.publish(work_topic(ns))
        return pb.HeartbeatResponse(lease_expire_time=wire.timestamp(expires))

    @unary
    async def PollWork(self, request: pb.PollWorkRequest, context: Context) -> pb.PollWorkResponse:
        ns = self._namespace(context)
        executor = validation.workflow_id(request.executor_id, "executor_id")
        if not 0 <= request.max_workflows <= MAX_CLAIM:
            raise InvalidArgument("max_workflows", f"must be 0-{MAX_CLAIM}")
        wait = validation.duration(
            request.HasField("timeout"),
            request.timeout,
            "timeout",
            default=min(DEFAULT_POLL_SECONDS, self._config.max_wait_seconds),
            minimum=0.0,
            maximum=self._config.max_wait_seconds,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self._hub.subscribe(work_topic(ns)) as waiter:
            while True:
                waiter.arm()
                claimed, dead = await workers.claim(
                    self._pool,
                    ns,
                    executor,
                    request.max_workflows or 1,
                    self._config.max_recovery_attempts,
                )
                if dead:
                    await management.notify_status(self._pool, ns, [w.workflow_id for w in dead])
                    for record in dead:
                        self._hub.publish(workflow_topic(ns, record.workflow_id))
                remaining = deadline - loop.time()
                if claimed or remaining <= 0:
                    return pb.PollWorkResponse(workflows=[wire.workflow(w) for w in claimed])
                # ENQUEUED work wakes us at once; a lapsed lease is noticed at the next look.
                await waiter.wait(min(remaining, self._config.sweep_seconds))

    @unary
    async def CancelWorkflow(
        self, request: pb.CancelWorkflowRequest, context: Context
    ) -> pb.CancelWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        record = await management.cancel(self._pool, ns, workflow_id)
        self._hub.publish(workflow_topic(ns, workflow_id))
        return pb.CancelWorkflowResponse(workflow=wire.workflow(record))

    @unary
    async def ResumeWorkflow(
        self, request: pb.ResumeWorkflowRequest, context: Context
    ) -> pb.ResumeWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        record = await management.resume(self._pool, ns, workflow_id)
        self._hub.publish(work_topic(ns))
        return pb.ResumeWorkflowResponse(workflow=wire.workflow(record))

    @unary
    async def ForkWorkflow(
        self, request: pb.ForkWorkflowRequest, context: Context
    ) -> pb.ForkWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        start_step = validation.step_id(request.start_step_id, "start_step_id")
        new_id = (
            validation.workflow_id(request.new_workflow_id, "new_workflow_id")
            if request.new_workflow_id
            else str(uuid.uuid4())
        )
        if new_id == workflow_id:
            raise InvalidArgument("new_workflow_id", "must differ from workflow_id")
        record = await management.fork(self._pool, ns, workflow_id, start_step, new_id)
        self._hub.publish(work_topic(ns))
        return pb.ForkWorkflowResponse(workflow=wire.workflow(record))

    @unary
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Context
    ) -> pb.ListWorkflowsResponse:
        ns = self._namespace(context)
        statuses = []
        for value in request.statuses:
            status = wire.status_from_wire(value)
            if status is None:
                raise InvalidArgument("statuses", f"unknown status {value}")
            statuses.append(status)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0-{MAX_PAGE_SIZE}")
        found, next_token = await management.list_workflows(
            self._pool,
            ns,
            statuses=statuses,
            name=validation.name(request.name, "name") if request.name else "",
            created_after=validation.timestamp(
                request.HasField("created_after"), request.created_after, "created_after"
            ),
            created_before=validation.timestamp(
                request.HasField("created_before"), request.created_before, "created_before"
            ),
            limit=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
            byte_budget=self._config.history_budget_bytes,
        )
        return pb.ListWorkflowsResponse(
            workflows=[wire.workflow(w) for w in found], next_page_token=next_token
        )

    @unary
    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        entries, next_token = await management.list_events(
            self._pool,
            ns,
            workflow_id,
            page_token=request.page_token,
            byte_budget=self._config.history_budget_bytes,
        )
        return pb.ListEventsResponse(
            events=[wire.event_entry(e) for e in entries], next_page_token=next_token
        )
