"""The CoordinatorService servicer: validate the request, call the store, build the reply."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from coordinator import (
    attributes,
    long_poll,
    metrics,
    session,
    start_options,
    validation,
    watch,
    wire,
    workflow_filter,
)
from coordinator.auth import Authenticator
from coordinator.config import Config
from coordinator.edge import Context, streaming, unary
from coordinator.errors import InvalidArgument
from coordinator.notify import Hub, event_topic, message_topic, work_topic, workflow_topic
from coordinator.store import (
    batched,
    children,
    finishes,
    management,
    messages,
    queues,
    steps,
    waits,
    workers,
    workflows,
)
from coordinator.store.records import EventValue, Status, StepKind, StepRecord
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
        # Group commit: RunStep, SetEvent and FinishWorkflow requests that arrive while
        # earlier ones are being committed share the next transaction
        # (coordinator/store/group_commit.py).
        max_batch = config.group_commit_max_batch if config.group_commit else 1
        self._step_writer = batched.step_writer(
            pool, max_batch=max_batch, observe=metrics.GROUP_COMMIT_BATCH.labels("RunStep").observe
        )
        self._event_writer = batched.event_writer(
            pool, max_batch=max_batch, observe=metrics.GROUP_COMMIT_BATCH.labels("SetEvent").observe
        )
        self._finish_writer = finishes.finish_writer(
            pool,
            max_batch=max_batch,
            observe=metrics.GROUP_COMMIT_BATCH.labels("FinishWorkflow").observe,
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
        return await self.start_workflow(self._namespace(context), request)

    # The hot-path calls' bodies take the caller's namespace, so that the unary RPC and
    # a Session stream (coordinator/session.py) run the very same code.
    async def start_workflow(
        self, ns: str, request: pb.StartWorkflowRequest
    ) -> pb.StartWorkflowResponse:
        parent = None
        if request.HasField("parent"):
            parent = children.StepRef(*validation.step_ref(request.parent, "parent"))
        workflow_id = (
            validation.workflow_id(request.workflow_id)
            if request.workflow_id
            # A child's start with no ID means "the recorded child" on a replay.
            else ("" if parent else str(uuid.uuid4()))
        )
        if parent and workflow_id == parent.workflow_id:
            raise InvalidArgument("workflow_id", "a workflow cannot be its own child")
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
        options = workflows.StartOptions(
            executor_id=executor,
            timeout=timeout,
            app_version=_app_version(request.app_version),
            **start_options.queue_options(request),
            **start_options.timing_options(request),
            **start_options.attribute_options(request),
        )
        if parent:
            record, created = await children.start_child(
                self._pool, ns, parent, workflow_id, name, input, options
            )
            workflow_id = record.workflow_id
        else:
            record, created = await workflows.start(
                self._pool, ns, workflow_id, name, input, options
            )
        if created and record.status is Status.ENQUEUED:
            self._hub.publish(work_topic(ns))  # other coordinators hear the NOTIFY
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
            for step_id, attempts in await steps.unfinished_attempts(self._pool, ns, workflow_id):
                response.unfinished_step_attempts.add(step_id=step_id, failed_attempts=attempts)
        return response

    @unary
    async def RunStep(self, request: pb.RunStepRequest, context: Context) -> pb.RunStepResponse:
        return await self.run_step(self._namespace(context), request)

    async def run_step(self, ns: str, request: pb.RunStepRequest) -> pb.RunStepResponse:
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
        if request.kind not in (pb.STEP_KIND_UNSPECIFIED, pb.STEP_KIND_STEP, pb.STEP_KIND_PATCH):
            raise InvalidArgument("kind", "must be STEP or PATCH (other kinds have their own RPCs)")
        kind = StepKind.PATCH if request.kind == pb.STEP_KIND_PATCH else StepKind.STEP
        record, already = await self._step_writer.write(
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
                kind=kind,
            )
        )
        return pb.RunStepResponse(step=wire.step(record), already_recorded=already)

    @unary
    async def SetEvent(self, request: pb.SetEventRequest, context: Context) -> pb.SetEventResponse:
        return await self.set_event(self._namespace(context), request)

    async def set_event(self, ns: str, request: pb.SetEventRequest) -> pb.SetEventResponse:
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        key = validation.name(request.key, "key")
        if not request.HasField("value"):
            raise InvalidArgument("value", "required")
        value = validation.payload(request.value, "value", self._config.max_payload_bytes)
        record, version = await self._event_writer.write(
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
        # Wake this process's readers now, handing them the value; other coordinators hear
        # the NOTIFY.
        self._hub.publish(
            event_topic(ns, workflow_id, key),
            version,
            EventValue(version, value, record.recorded_at),
        )
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
        if request.from_first_value:
            if not request.follow:
                raise InvalidArgument("from_first_value", "requires follow")
            if request.after_version:
                raise InvalidArgument("from_first_value", "not allowed with after_version")
        if request.HasField("caller"):
            if request.follow:
                raise InvalidArgument("follow", "not allowed with caller (a read is one value)")
            if request.after_version:
                raise InvalidArgument("after_version", "not allowed with caller")
            caller_id, step_id, executor = validation.step_ref(request.caller, "caller")
            read = await long_poll.read_event_as_step(
                self._pool,
                self._hub,
                ns,
                workflow_id,
                key,
                timeout,
                caller_id=caller_id,
                step_id=step_id,
                executor=executor,
            )
            yield wire.recorded_event(read) if isinstance(read, StepRecord) else _event(read)
            return
        values = long_poll.event_values(
            self._pool,
            self._hub,
            ns,
            workflow_id,
            key,
            after=request.after_version,
            follow=request.follow,
            deadline=long_poll.deadline_after(timeout),
            from_first=request.from_first_value,
        )
        # Closed with this stream, so that its waiter goes at once.
        async with contextlib.aclosing(values):
            async for value in values:
                yield _event(value)

    @unary
    async def Send(self, request: pb.SendRequest, context: Context) -> pb.SendResponse:
        ns = self._namespace(context)
        destination = validation.workflow_id(
            request.destination_workflow_id, "destination_workflow_id"
        )
        topic = validation.topic(request.topic)
        if not request.HasField("message"):
            raise InvalidArgument("message", "required")
        message = validation.payload(request.message, "message", self._config.max_payload_bytes)
        key = (
            validation.name(request.idempotency_key, "idempotency_key")
            if request.idempotency_key
            else None
        )
        caller = None
        if request.HasField("caller"):
            caller = messages.Caller(*validation.step_ref(request.caller, "caller"))
            key = key or messages.default_idempotency_key(caller.workflow_id, caller.step_id)
        sent = await messages.send(
            self._pool, ns, destination, topic, message, idempotency_key=key, caller=caller
        )
        if sent.delivered:
            # Wake this process's receivers now; other coordinators hear the NOTIFY.
            self._hub.publish(message_topic(ns, destination, topic))
        response = pb.SendResponse(already_sent=not sent.delivered)
        if sent.step is not None:
            response.step.CopyFrom(wire.step(sent.step))
        return response

    @unary
    async def Recv(self, request: pb.RecvRequest, context: Context) -> pb.RecvResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        topic = validation.topic(request.topic)
        timeout = self._timeout(request.HasField("timeout"), request.timeout)
        executor = validation.executor_id(request.executor_id)
        received = await long_poll.receive(
            self._pool, self._hub, ns, workflow_id, step_id, topic, timeout, executor=executor
        )
        return pb.RecvResponse(
            step=wire.step(received.step), already_recorded=received.already_recorded
        )

    @unary
    async def Sleep(self, request: pb.SleepRequest, context: Context) -> pb.SleepResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        step_id = validation.step_id(request.step_id)
        if not request.HasField("duration"):
            raise InvalidArgument("duration", "required")
        seconds = validation.duration(
            True, request.duration, "duration", default=0.0, minimum=0.0, maximum=MAX_TIMEOUT
        )
        slept = await waits.sleep(
            self._pool,
            ns,
            workflow_id,
            step_id,
            seconds,
            executor_id=validation.executor_id(request.executor_id),
        )
        return pb.SleepResponse(
            step=wire.step(slept.step),
            already_recorded=slept.already_recorded,
            remaining=wire.duration(slept.remaining),
        )

    @unary
    async def FinishWorkflow(
        self, request: pb.FinishWorkflowRequest, context: Context
    ) -> pb.FinishWorkflowResponse:
        return await self.finish_workflow(self._namespace(context), request)

    async def finish_workflow(
        self, ns: str, request: pb.FinishWorkflowRequest
    ) -> pb.FinishWorkflowResponse:
        workflow_id = validation.workflow_id(request.workflow_id)
        result = validation.outcome(
            request.WhichOneof("result"),
            request.output,
            request.error,
            "result",
            self._config.max_payload_bytes,
        )
        record, already = await self._finish_writer.write(
            finishes.FinishWrite(
                ns, workflow_id, result, validation.executor_id(request.executor_id)
            )
        )
        if not already:
            self._hub.publish(workflow_topic(ns, workflow_id))
            if record.queue_name:
                self._hub.publish(work_topic(ns))  # a slot of its queue is free
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
        record = await long_poll.finished_workflow(
            self._pool, self._hub, ns, workflow_id, deadline=long_poll.deadline_after(timeout)
        )
        return pb.AwaitWorkflowResponse(
            workflow=wire.workflow(record), timed_out=not record.status.finished
        )

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
        return await self.record_step_attempt(self._namespace(context), request)

    async def record_step_attempt(
        self, ns: str, request: pb.RecordStepAttemptRequest
    ) -> pb.RecordStepAttemptResponse:
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
        if len(request.queues) > MAX_WORKFLOW_NAMES:
            raise InvalidArgument("queues", f"more than {MAX_WORKFLOW_NAMES}")
        served = list(dict.fromkeys(validation.name(q, "queues") for q in request.queues))
        lease = validation.duration(
            request.HasField("lease"),
            request.lease,
            "lease",
            default=DEFAULT_LEASE_SECONDS,
            minimum=1.0,
            maximum=600.0,
        )
        expires, took_over = await workers.heartbeat(
            self._pool,
            ns,
            executor,
            worker_name,
            names,
            timedelta(seconds=lease),
            served,
            app_version=_app_version(request.app_version),
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
        claimed = await long_poll.claim_work(
            self._pool,
            self._hub,
            ns,
            executor,
            request.max_workflows or 1,
            deadline=long_poll.deadline_after(wait),
            max_recovery_attempts=self._config.max_recovery_attempts,
            sweep_seconds=self._config.sweep_seconds,
        )
        return pb.PollWorkResponse(workflows=[wire.workflow(w) for w in claimed])

    @streaming
    async def Session(
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: Context
    ) -> AsyncIterator[pb.SessionResponse]:
        # Authenticated once, by the stream's metadata; every call on it is in this namespace.
        ns = self._namespace(context)
        batches = session.one_per_message(request_iterator)
        async for ready in session.serve(self, ns, batches, self._hub):
            for response in ready:
                yield response

    @streaming
    async def BatchedSession(
        self, request_iterator: AsyncIterator[pb.BatchedSessionRequest], context: Context
    ) -> AsyncIterator[pb.BatchedSessionResponse]:
        ns = self._namespace(context)
        batches = session.calls_of(request_iterator)
        async for ready in session.serve(self, ns, batches, self._hub):
            yield pb.BatchedSessionResponse(results=ready)

    @unary
    async def ConfigureQueue(
        self, request: pb.ConfigureQueueRequest, context: Context
    ) -> pb.ConfigureQueueResponse:
        ns = self._namespace(context)
        if not request.HasField("queue"):
            raise InvalidArgument("queue", "required")
        config = await queues.configure(self._pool, ns, validation.queue_config(request.queue))
        return pb.ConfigureQueueResponse(queue=wire.queue_config(config))

    @unary
    async def GetQueue(self, request: pb.GetQueueRequest, context: Context) -> pb.GetQueueResponse:
        ns = self._namespace(context)
        queue = validation.name(request.name, "name")
        if not 0 <= request.max_partitions <= MAX_PAGE_SIZE:
            raise InvalidArgument("max_partitions", f"must be 0-{MAX_PAGE_SIZE}")
        config, total, partitions, truncated = await queues.load(
            self._pool, ns, queue, request.max_partitions or DEFAULT_PAGE_SIZE
        )
        return pb.GetQueueResponse(
            queue=wire.queue_config(config),
            total=wire.queue_load(total),
            partitions=[wire.queue_load(p) for p in partitions],
            partitions_truncated=truncated,
        )

    @unary
    async def CancelWorkflow(
        self, request: pb.CancelWorkflowRequest, context: Context
    ) -> pb.CancelWorkflowResponse:
        ns = self._namespace(context)
        workflow_id = validation.workflow_id(request.workflow_id)
        record = await management.cancel(self._pool, ns, workflow_id)
        self._hub.publish(workflow_topic(ns, workflow_id))
        if record.queue_name:
            self._hub.publish(work_topic(ns))  # a slot of its queue may be free
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
        record = await management.fork(
            self._pool, ns, workflow_id, start_step, new_id, _app_version(request.app_version)
        )
        self._hub.publish(work_topic(ns))
        return pb.ForkWorkflowResponse(workflow=wire.workflow(record))

    @unary
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Context
    ) -> pb.ListWorkflowsResponse:
        ns = self._namespace(context)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0-{MAX_PAGE_SIZE}")
        found, next_token = await management.list_workflows(
            self._pool,
            ns,
            workflow_filter.from_request(request),
            limit=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
            byte_budget=self._config.history_budget_bytes,
        )
        return pb.ListWorkflowsResponse(
            workflows=[wire.workflow(w) for w in found], next_page_token=next_token
        )

    @unary
    async def SetAttributes(
        self, request: pb.SetAttributesRequest, context: Context
    ) -> pb.SetAttributesResponse:
        return await attributes.set_attributes(self, self._namespace(context), request)

    @streaming
    async def WatchWorkflows(
        self, request: pb.WatchWorkflowsRequest, context: Context
    ) -> AsyncIterator[pb.WatchWorkflowsResponse]:
        changes = watch.watch_workflows(self, self._namespace(context), request, context)
        # Closed with this stream, so that its subscription goes at once.
        async with contextlib.aclosing(changes):  # type: ignore[type-var]
            async for change in changes:
                yield change

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


def _app_version(value: str) -> str:
    """An application version ('' for none): the characters of a workflow ID."""
    return validation.workflow_id(value, "app_version") if value else ""


def _event(seen: EventValue | long_poll.NoValue) -> pb.GetEventResponse:
    """A GetEvent message: the value, or why the wait ended without one."""
    if isinstance(seen, EventValue):
        return wire.event(seen)
    if seen.finished is not None:
        return pb.GetEventResponse(
            workflow_finished=pb.WorkflowFinished(status=wire.status(seen.finished))
        )
    return pb.GetEventResponse(timed_out=pb.TimedOut())
