"""The async coordinator connection (grpc.aio): the same calls, rules and errors as
`durable.Client`, awaited. One channel per client, bound to the event loop that first uses
it; workflows' hot-path calls from every task share one Session stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from durable import _payloads
from durable._aio.stream import AsyncSessionStream
from durable._connection import TLS, open_aio_channel
from durable._core import calls, schedules, specs
from durable._core.calls import (
    CALL_TIMEOUT_SECONDS,
    RETRY_READ,
    RETRY_UNAVAILABLE,
    WAIT_MARGIN_SECONDS,
    Deadline,
)
from durable._core.ops import duration
from durable._failures import CallFailed
from durable._payloads import PayloadCodec
from durable._retry import Backoff, RetryPolicy
from durable.errors import CoordinatorError, DurableError
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from durable.v1 import schedules_pb2 as spb
from durable.v1 import schedules_pb2_grpc as spb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# The deadline of a bulk action's stream (it works through its batches meanwhile).
BULK_TIMEOUT_SECONDS = 3600.0

T = TypeVar("T")


async def _call(
    attempt: Callable[[], Awaitable[T]], retry: RetryPolicy, retry_on: frozenset[grpc.StatusCode]
) -> T:
    """Await `attempt` (one fresh call) until it succeeds, fails with a code not in
    `retry_on`, or the retry budget is spent."""
    backoff = Backoff(retry)
    while True:
        try:
            return await attempt()
        except (grpc.RpcError, CallFailed) as error:
            await asyncio.sleep(calls.retry_pause(error, retry_on, backoff))


class AsyncClient:
    """An asyncio connection to a coordinator; arguments as for `durable.Client`.

    Made anywhere, it opens its channel on first use, on the running event loop, and is
    then used from that loop only (a grpc.aio channel belongs to one loop). `close()` it
    when done, or use it as `async with durable.aio.AsyncClient(...) as client:`.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        tls: TLS | None = None,
        retry: RetryPolicy | None = None,
        session: bool | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.target = target or os.environ.get("DURABLE_COORDINATOR", DEFAULT_TARGET)
        self._token = token or os.environ.get("DURABLE_TOKEN") or None
        self._tls = tls or TLS.from_env()
        self._use_session = calls.use_session(session)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub_: pb_grpc.CoordinatorServiceAsyncStub | None = None
        self._schedules_: spb_grpc.ScheduleServiceAsyncStub | None = None
        self._operations_: opb_grpc.OperationsServiceAsyncStub | None = None
        self._stream: AsyncSessionStream | None = None
        self._closed = False

    @property
    def _stub(self) -> pb_grpc.CoordinatorServiceAsyncStub:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise CallFailed(grpc.StatusCode.CANCELLED, "client closed")
        if self._stub_ is None:
            self._loop = loop
            self._channel = open_aio_channel(self.target, self._token, self._tls)
            self._stub_ = pb_grpc.CoordinatorServiceStub(self._channel)
        elif loop is not self._loop:
            raise DurableError(
                "this AsyncClient is bound to another event loop: make one per loop"
                " (durable.aio's default client is one per loop already)"
            )
        return self._stub_

    @property
    def _schedules(self) -> spb_grpc.ScheduleServiceAsyncStub:
        _ = self._stub  # opens the channel on this loop, or says why it cannot
        if self._schedules_ is None:
            assert self._channel is not None
            self._schedules_ = spb_grpc.ScheduleServiceStub(self._channel)
        return self._schedules_

    @property
    def _operations(self) -> opb_grpc.OperationsServiceAsyncStub:
        _ = self._stub  # opens the channel on this loop, or says why it cannot
        if self._operations_ is None:
            assert self._channel is not None
            self._operations_ = opb_grpc.OperationsServiceStub(self._channel)
        return self._operations_

    async def _operations_call(self, method: str, request: Message, *, read: bool = False) -> Any:
        return await _call(
            lambda: getattr(self._operations, method)(request, timeout=CALL_TIMEOUT_SECONDS),
            self.retry,
            RETRY_READ if read else RETRY_UNAVAILABLE,
        )

    async def _schedule_call(self, method: str, request: Message, *, read: bool = False) -> Any:
        return await _call(
            lambda: getattr(self._schedules, method)(request, timeout=CALL_TIMEOUT_SECONDS),
            self.retry,
            RETRY_READ if read else RETRY_UNAVAILABLE,
        )

    # --- retention and deleting workflows (OperationsService) ------------------------------

    async def set_retention(self, seconds: float | None) -> opb.RetentionPolicy:
        """As `durable.Client.set_retention`."""
        request = (
            opb.SetRetentionRequest(clear=True)
            if seconds is None
            else opb.SetRetentionRequest(finished_after=duration(seconds))
        )
        reply: opb.SetRetentionResponse = await self._operations_call("SetRetention", request)
        return reply.policy

    async def get_retention(self) -> opb.RetentionPolicy:
        reply: opb.GetRetentionResponse = await self._operations_call(
            "GetRetention", opb.GetRetentionRequest(), read=True
        )
        return reply.policy

    async def delete_workflow(self, workflow_id: str, include_children: bool = False) -> int:
        """As `durable.Client.delete_workflow`."""
        request = opb.DeleteWorkflowRequest(
            workflow_id=workflow_id, include_children=include_children
        )
        reply: opb.DeleteWorkflowResponse = await self._operations_call("DeleteWorkflow", request)
        return reply.deleted

    # --- bulk actions and queue pause (OperationsService) ----------------------------------

    async def bulk_action(
        self, method: str, request: opb.CancelWorkflowsRequest | opb.ResumeWorkflowsRequest
    ) -> AsyncIterator[opb.BulkProgress]:
        """As `durable.Client.bulk_action`."""
        backoff = Backoff(self.retry)
        before = 0  # changed by attempts that broke off
        while True:
            stream = getattr(self._operations, method)(request, timeout=BULK_TIMEOUT_SECONDS)
            changed = 0
            try:
                async for message in stream:
                    backoff.reset()
                    progress = message.progress
                    changed = progress.changed
                    yield opb.BulkProgress(
                        matched=before + progress.matched,
                        changed=before + progress.changed,
                        done=progress.done,
                    )
                return
            except grpc.RpcError as error:
                pause = calls.retry_pause(error, RETRY_UNAVAILABLE, backoff)
                before += changed
            finally:
                stream.cancel()
            await asyncio.sleep(pause)

    async def set_queue_paused(self, name: str, paused: bool) -> pb.QueueConfig:
        """As `durable.Client.set_queue_paused`."""
        if paused:
            reply = await self._operations_call("PauseQueue", opb.PauseQueueRequest(name=name))
        else:
            reply = await self._operations_call("ResumeQueue", opb.ResumeQueueRequest(name=name))
        queue: pb.QueueConfig = reply.queue
        return queue

    # --- schedules (ScheduleService) -------------------------------------------------------

    async def set_schedule(self, spec: spb.ScheduleSpec) -> spb.SetScheduleResponse:
        reply: spb.SetScheduleResponse = await self._schedule_call(
            "SetSchedule", spb.SetScheduleRequest(spec=spec)
        )
        return reply

    async def get_schedule(self, name: str) -> spb.GetScheduleResponse:
        reply: spb.GetScheduleResponse = await self._schedule_call(
            "GetSchedule", spb.GetScheduleRequest(name=name), read=True
        )
        return reply

    async def list_schedules(
        self, page_size: int = 0, page_token: str = "", workflow_name: str = ""
    ) -> spb.ListSchedulesResponse:
        request = spb.ListSchedulesRequest(
            page_size=page_size, page_token=page_token, workflow_name=workflow_name
        )
        reply: spb.ListSchedulesResponse = await self._schedule_call(
            "ListSchedules", request, read=True
        )
        return reply

    async def pause_schedule(self, name: str) -> spb.Schedule:
        reply = await self._schedule_call("PauseSchedule", spb.PauseScheduleRequest(name=name))
        schedule: spb.Schedule = reply.schedule
        return schedule

    async def resume_schedule(self, name: str) -> spb.Schedule:
        reply = await self._schedule_call("ResumeSchedule", spb.ResumeScheduleRequest(name=name))
        schedule: spb.Schedule = reply.schedule
        return schedule

    async def delete_schedule(self, name: str) -> bool:
        reply = await self._schedule_call("DeleteSchedule", spb.DeleteScheduleRequest(name=name))
        return bool(reply.deleted)

    async def trigger_schedule(self, name: str, workflow_id: str = "") -> pb.Workflow:
        """As Client.trigger_schedule."""
        request = spb.TriggerScheduleRequest(
            name=name, workflow_id=workflow_id or schedules.manual_workflow_id(name)
        )
        reply: spb.TriggerScheduleResponse = await self._schedule_call("TriggerSchedule", request)
        return reply.workflow

    async def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _session(self) -> AsyncSessionStream:
        """The open Session stream, opened now if there is none or the last one broke."""
        stub = self._stub
        if self._stream is None or self._stream.broken:
            self._stream = AsyncSessionStream(stub)
        return self._stream

    async def _hot(self, field: str, method: str, request: Message) -> Any:
        """A hot-path call: on the Session stream (as its `field`), else unary `method`."""
        if self._use_session:
            try:
                return await _call(
                    lambda: self._session().call(field, request, CALL_TIMEOUT_SECONDS),
                    self.retry,
                    RETRY_UNAVAILABLE,
                )
            except CoordinatorError as error:
                if error.code != grpc.StatusCode.UNIMPLEMENTED:
                    raise
            # A coordinator from before Session streams: unary calls from now on.
            self._use_session = False
        return await self._unary(method, request)

    async def _unary(
        self,
        method: str,
        request: Message,
        *,
        read: bool = False,
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> Any:
        """One unary call with a deadline, retried per the policy."""
        return await _call(
            lambda: getattr(self._stub, method)(request, timeout=timeout),
            self.retry,
            RETRY_READ if read else RETRY_UNAVAILABLE,
        )

    # --- workflows' calls (the core's Call effects name these) ----------------------------

    async def start_workflow(
        self,
        workflow_id: str,
        name: str,
        input: pb.Payload,
        *,
        executor_id: str = "",
        timeout: float | None = None,
        queue_name: str = "",
        priority: int = 0,
        deduplication_id: str = "",
        parent: pb.StepRef | None = None,
        app_version: str = "",
        partition_key: str = "",
        delay: float | None = None,
        start_at: datetime | None = None,
        debounce_key: str = "",
        debounce: float | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> pb.StartWorkflowResponse:
        """As `durable.Client.start_workflow`."""
        request = specs.start_request(
            workflow_id,
            name,
            input,
            executor_id=executor_id,
            timeout=timeout,
            queue_name=queue_name,
            priority=priority,
            deduplication_id=deduplication_id,
            parent=parent,
            app_version=app_version,
            partition_key=partition_key,
            delay=delay,
            start_at=start_at,
            debounce_key=debounce_key,
            debounce=debounce,
            attributes=attributes,
        )
        reply: pb.StartWorkflowResponse = await self._hot(
            "start_workflow", "StartWorkflow", request
        )
        return reply

    async def run_step(self, request: pb.RunStepRequest) -> pb.RunStepResponse:
        reply: pb.RunStepResponse = await self._hot("run_step", "RunStep", request)
        return reply

    async def set_event(self, request: pb.SetEventRequest) -> pb.SetEventResponse:
        reply: pb.SetEventResponse = await self._hot("set_event", "SetEvent", request)
        return reply

    async def set_attributes(self, request: pb.SetAttributesRequest) -> pb.SetAttributesResponse:
        """As `durable.Client.set_attributes`."""
        reply: pb.SetAttributesResponse = await self._unary("SetAttributes", request)
        return reply

    async def finish_workflow(self, request: pb.FinishWorkflowRequest) -> pb.FinishWorkflowResponse:
        reply: pb.FinishWorkflowResponse = await self._hot(
            "finish_workflow", "FinishWorkflow", request
        )
        return reply

    async def record_step_attempt(self, request: pb.RecordStepAttemptRequest) -> None:
        await self._hot("record_step_attempt", "RecordStepAttempt", request)

    async def get_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        reply = await self._unary("GetWorkflow", request, read=True)
        workflow: pb.Workflow = reply.workflow
        return workflow

    async def await_workflow(self, workflow_id: str, timeout: float) -> pb.AwaitWorkflowResponse:
        """Wait up to `timeout` seconds; a retry waits only for what is left of it."""
        deadline = Deadline(timeout)

        async def attempt() -> pb.AwaitWorkflowResponse:
            left = deadline.left()
            request = pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(left))
            reply: pb.AwaitWorkflowResponse = await self._stub.AwaitWorkflow(
                request, timeout=left + WAIT_MARGIN_SECONDS
            )
            return reply

        return await _call(attempt, self.retry, RETRY_UNAVAILABLE)

    async def send(self, request: pb.SendRequest) -> pb.SendResponse:
        """Retried safely only with an idempotency key or a caller (the SDK sets one)."""
        reply: pb.SendResponse = await self._unary("Send", request)
        return reply

    async def recv(self, request: pb.RecvRequest) -> pb.RecvResponse:
        """Wait up to `request.timeout` for a message; a retry sends what is left of it."""
        deadline = Deadline(request.timeout.ToNanoseconds() / 1e9)

        async def attempt() -> pb.RecvResponse:
            left = deadline.left()
            retry = calls.recv_retry(request, left)
            reply: pb.RecvResponse = await self._stub.Recv(
                retry, timeout=left + WAIT_MARGIN_SECONDS
            )
            return reply

        return await _call(attempt, self.retry, RETRY_UNAVAILABLE)

    async def sleep(self, request: pb.SleepRequest) -> pb.SleepResponse:
        reply: pb.SleepResponse = await self._unary("Sleep", request)
        return reply

    async def get_event(
        self,
        workflow_id: str,
        key: str,
        timeout: float,
        *,
        follow: bool,
        caller: pb.StepRef | None = None,
        from_first: bool = False,
    ) -> AsyncIterator[pb.GetEventResponse]:
        """The GetEvent stream's messages, as `durable.Client.get_event`: cancelled if the
        caller stops iterating early; after a coordinator restart the call is made again
        for what is left of `timeout`, a follow resuming after the last version it gave;
        a follow `from_first` starts with the event's whole history, from version 1."""
        deadline = Deadline(timeout)
        after = 0
        backoff = Backoff(self.retry)
        while True:
            left = deadline.left()
            request = calls.get_event_request(
                workflow_id,
                key,
                left,
                follow=follow,
                after_version=after,
                caller=caller,
                from_first=from_first,
            )
            stream = self._stub.GetEvent(request, timeout=left + WAIT_MARGIN_SECONDS)
            try:
                async for message in stream:
                    backoff.reset()
                    if message.HasField("event"):
                        after = message.event.version
                    yield message
                return
            except grpc.RpcError as error:
                pause = calls.retry_pause(error, RETRY_UNAVAILABLE, backoff)
            finally:
                stream.cancel()
            await asyncio.sleep(pause)

    async def watch_workflows(
        self, where: pb.ListWorkflowsRequest, *, after: str = "", timeout: float | None = None
    ) -> AsyncIterator[pb.WatchWorkflowsResponse]:
        """The WatchWorkflows stream's messages, as `durable.Client.watch_workflows`:
        reopened after the last change (or the first stream's start) when the coordinator
        becomes unavailable, forever without a timeout."""
        deadline = Deadline(timeout) if timeout is not None else None
        cursor = after
        backoff = Backoff(self.retry)
        while True:
            request = pb.WatchWorkflowsRequest(filter=where, after_cursor=cursor)
            left = None
            if deadline is not None:
                left = deadline.left()
                request.timeout.CopyFrom(duration(left))
            stream = self._stub.WatchWorkflows(
                request, timeout=None if left is None else left + WAIT_MARGIN_SECONDS
            )
            pause = 0.0
            try:
                if not cursor:  # the start, to resume from if cut before any change
                    start = dict(await stream.initial_metadata() or ()).get("durable-watch-cursor")
                    cursor = str(start or "")
                ended = True
                async for message in stream:
                    backoff.reset()
                    if message.HasField("change"):
                        cursor = message.change.cursor
                    elif deadline is None:
                        ended = False  # the server's longest wait passed: open it again
                        break
                    yield message
                if ended:
                    return
            except grpc.RpcError as error:
                pause = calls.retry_pause(error, RETRY_UNAVAILABLE, backoff)
            finally:
                stream.cancel()
            await asyncio.sleep(pause)

    async def first_event(
        self, workflow_id: str, key: str, timeout: float, caller: pb.StepRef | None = None
    ) -> pb.EventValue | None:
        """The event's value once it is set (None when `timeout` passes first)."""
        messages = self.get_event(workflow_id, key, timeout, follow=False, caller=caller)
        try:
            async for message in messages:
                if message.HasField("event"):
                    return message.event
            return None
        finally:
            await messages.aclose()  # type: ignore[attr-defined]

    # --- workers --------------------------------------------------------------------------

    async def heartbeat(
        self,
        executor_id: str,
        worker_name: str,
        workflow_names: list[str],
        lease: float,
        queues: list[str] | None = None,
        app_version: str = "",
    ) -> pb.HeartbeatResponse:
        request = calls.heartbeat_request(
            executor_id, worker_name, workflow_names, lease, queues, app_version
        )
        reply: pb.HeartbeatResponse = await self._unary("Heartbeat", request)
        return reply

    async def configure_queue(self, queue: pb.QueueConfig) -> pb.QueueConfig:
        reply = await self._unary("ConfigureQueue", pb.ConfigureQueueRequest(queue=queue))
        config: pb.QueueConfig = reply.queue
        return config

    async def get_queue(self, name: str, max_partitions: int = 0) -> pb.GetQueueResponse:
        request = pb.GetQueueRequest(name=name, max_partitions=max_partitions)
        reply: pb.GetQueueResponse = await self._unary("GetQueue", request, read=True)
        return reply

    async def poll_work(
        self, executor_id: str, max_workflows: int, wait: float
    ) -> list[pb.Workflow]:
        """Claim up to `max_workflows`, waiting up to `wait` seconds for some. Cancel the
        awaiting task to stop the wait. Not retried: a reply lost after the coordinator
        claimed would strand those workflows, so the caller simply polls again."""
        request = pb.PollWorkRequest(
            executor_id=executor_id, max_workflows=max_workflows, timeout=duration(wait)
        )
        try:
            reply = await self._stub.PollWork(request, timeout=wait + WAIT_MARGIN_SECONDS)
        except grpc.RpcError as error:
            raise CallFailed.from_rpc_error(error).typed() from None
        return list(reply.workflows)

    # --- management -----------------------------------------------------------------------

    async def cancel_workflow(self, workflow_id: str) -> pb.Workflow:
        reply = await self._unary(
            "CancelWorkflow", pb.CancelWorkflowRequest(workflow_id=workflow_id)
        )
        workflow: pb.Workflow = reply.workflow
        return workflow

    async def resume_workflow(self, workflow_id: str) -> pb.Workflow:
        reply = await self._unary(
            "ResumeWorkflow", pb.ResumeWorkflowRequest(workflow_id=workflow_id)
        )
        workflow: pb.Workflow = reply.workflow
        return workflow

    async def fork_workflow(
        self,
        workflow_id: str,
        start_step_id: int,
        new_workflow_id: str = "",
        app_version: str = "",
    ) -> pb.Workflow:
        request = calls.fork_request(workflow_id, start_step_id, new_workflow_id, app_version)
        reply = await self._unary("ForkWorkflow", request)
        workflow: pb.Workflow = reply.workflow
        return workflow

    async def list_workflows(self, request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsResponse:
        reply: pb.ListWorkflowsResponse = await self._unary("ListWorkflows", request, read=True)
        return reply

    async def list_steps(
        self, workflow_id: str, after_step_id: int = 0, page_size: int = 0
    ) -> pb.ListStepsResponse:
        request = pb.ListStepsRequest(
            workflow_id=workflow_id, after_step_id=after_step_id, page_size=page_size
        )
        reply: pb.ListStepsResponse = await self._unary("ListSteps", request, read=True)
        return reply

    async def list_events(self, workflow_id: str) -> list[pb.Event]:
        """Every event of the workflow with its latest value (all pages)."""
        events: list[pb.Event] = []
        token = ""
        while True:
            request = pb.ListEventsRequest(workflow_id=workflow_id, page_token=token)
            reply = await self._unary("ListEvents", request, read=True)
            events.extend(reply.events)
            token = reply.next_page_token
            if not token:
                return events


# --- the default client: one per event loop -----------------------------------------------

_settings: dict[str, Any] = {}
_closing: set[asyncio.Task[None]] = set()  # old default clients being closed
_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def configure(
    target: str | None = None,
    *,
    token: str | None = None,
    tls: TLS | None = None,
    retry: RetryPolicy | None = None,
    session: bool | None = None,
    codecs: Iterable[PayloadCodec] | None = None,
) -> None:
    """Point the async face at a coordinator; arguments as for `AsyncClient`. Each event
    loop gets its own default client with these settings, made when it is first used (a
    grpc.aio channel belongs to one loop). Can be called before any loop runs. `codecs`:
    the payload codecs of this process, both faces (see `durable.set_payload_codecs`;
    None leaves them as they are)."""
    if codecs is not None:
        _payloads.set_codecs(codecs)
    _settings.clear()
    _settings.update(target=target, token=token, tls=tls, retry=retry, session=session)
    # Each loop's next call makes a client with the new settings. The running loop's old
    # one is closed (in a task of its own); another loop's can only be closed on it.
    with contextlib.suppress(RuntimeError):
        old = _defaults.get(asyncio.get_running_loop())
        if old is not None:
            _closing.add(task := asyncio.get_running_loop().create_task(old.close()))
            task.add_done_callback(_closing.discard)
    _defaults.clear()


def default_client() -> AsyncClient:
    """The running event loop's default client."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise DurableError(
            "durable.aio needs a running event loop: await this inside async code"
        ) from None
    client = _defaults.get(loop)
    if client is None:
        client = _defaults[loop] = AsyncClient(**_settings)
    return client


async def close() -> None:
    """Close the running event loop's default client (e.g. at an application's shutdown,
    before its loop ends); the next call on the loop opens a new one."""
    loop = asyncio.get_running_loop()
    client = _defaults.pop(loop, None)
    if client is not None:
        await client.close()
