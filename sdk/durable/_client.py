"""The coordinator connection: one gRPC channel per process, every call with a deadline,
retries while the coordinator is briefly away (RetryPolicy), and gRPC errors turned into
the SDK's typed exceptions."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from durable import _drive, _payloads
from durable._connection import TLS, open_channel
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
from durable._stream import SessionStream
from durable.errors import CoordinatorError
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

# The initial metadata a WatchWorkflows stream starts with: its start cursor.
WATCH_START_METADATA = "durable-watch-cursor"


def _call(attempt: Callable[[], T], retry: RetryPolicy, retry_on: frozenset[grpc.StatusCode]) -> T:
    """Run `attempt` (one fresh call, unary or on the session stream) until it succeeds,
    fails with a code not in `retry_on`, or the retry budget is spent."""
    backoff = Backoff(retry)
    while True:
        try:
            return attempt()
        except (grpc.RpcError, CallFailed) as error:
            time.sleep(calls.retry_pause(error, retry_on, backoff))


class Client:
    """A connection to a coordinator. Thread-safe; one per process is plenty."""

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        tls: TLS | None = None,
        retry: RetryPolicy | None = None,
        session: bool | None = None,
    ) -> None:
        """Connect to `target` (default: $DURABLE_COORDINATOR or 127.0.0.1:50051), with an
        optional bearer token (default: $DURABLE_TOKEN) and TLS (default: from
        $DURABLE_TLS_CA and friends, see `TLS.from_env`). `retry`: how calls are retried
        while the coordinator is unavailable (default: `RetryPolicy()`, up to 30 s).
        `session`: send workflows' steps, events, starts and finishes over one Session
        stream rather than a unary call each, several times cheaper (default: yes, unless
        $DURABLE_SESSION is 0)."""
        self.retry = retry or RetryPolicy()
        self.target = target or os.environ.get("DURABLE_COORDINATOR", DEFAULT_TARGET)
        token = token or os.environ.get("DURABLE_TOKEN") or None
        self._channel = open_channel(self.target, token, tls or TLS.from_env())
        self._stub = pb_grpc.CoordinatorServiceStub(self._channel)
        self._schedules = spb_grpc.ScheduleServiceStub(self._channel)
        self._operations = opb_grpc.OperationsServiceStub(self._channel)
        self._use_session = calls.use_session(session)
        self._stream_lock = threading.Lock()
        self._stream: SessionStream | None = None
        self._closed = False

    def close(self) -> None:
        with self._stream_lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self._channel.close()

    def _session(self) -> SessionStream:
        """The open Session stream, opened now if there is none or the last one broke."""
        with self._stream_lock:
            if self._closed:
                raise CallFailed(grpc.StatusCode.CANCELLED, "client closed")
            if self._stream is None or self._stream.broken:
                self._stream = SessionStream(self._stub)
            return self._stream

    def _hot(self, field: str, method: Callable[..., T], request: Message) -> T:
        """A hot-path call: on the Session stream (as its `field`), else unary `method`."""
        if not self._use_session:
            return self._unary(method, request)

        def attempt() -> T:
            # The response message for `field`: the type `method` would have returned.
            answer = self._session().call(field, request, CALL_TIMEOUT_SECONDS)
            return answer  # type: ignore[return-value]

        try:
            return _call(attempt, self.retry, RETRY_UNAVAILABLE)
        except CoordinatorError as error:
            if error.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
        # A coordinator from before Session streams: unary calls from now on.
        self._use_session = False
        return self._unary(method, request)

    def _unary(
        self,
        method: Callable[..., T],
        request: object,
        *,
        read: bool = False,
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> T:
        """One unary call with a deadline, retried per the policy."""
        return _call(
            lambda: method(request, timeout=timeout),
            self.retry,
            RETRY_READ if read else RETRY_UNAVAILABLE,
        )

    # --- retention and deleting workflows (OperationsService) ------------------------------

    def set_retention(self, seconds: float | None) -> opb.RetentionPolicy:
        """Set the namespace's retention (finished workflows are deleted this many seconds
        after their last change), or remove it (None); the policy in force after."""
        request = (
            opb.SetRetentionRequest(clear=True)
            if seconds is None
            else opb.SetRetentionRequest(finished_after=duration(seconds))
        )
        reply: opb.SetRetentionResponse = self._unary(self._operations.SetRetention, request)
        return reply.policy

    def get_retention(self) -> opb.RetentionPolicy:
        request = opb.GetRetentionRequest()
        reply: opb.GetRetentionResponse = self._unary(
            self._operations.GetRetention, request, read=True
        )
        return reply.policy

    def delete_workflow(self, workflow_id: str, include_children: bool = False) -> int:
        """Delete a finished workflow (and its descendants); how many were deleted."""
        request = opb.DeleteWorkflowRequest(
            workflow_id=workflow_id, include_children=include_children
        )
        reply: opb.DeleteWorkflowResponse = self._unary(self._operations.DeleteWorkflow, request)
        return reply.deleted

    # --- bulk actions and queue pause (OperationsService) ----------------------------------

    def bulk_action(
        self, method: str, request: opb.CancelWorkflowsRequest | opb.ResumeWorkflowsRequest
    ) -> Iterator[opb.BulkProgress]:
        """The progress of CancelWorkflows or ResumeWorkflows (`method`), one message per
        batch; cancelled if the caller stops iterating early. If the coordinator becomes
        unavailable mid-way the call is made again (what was changed no longer matches),
        and the counts go on from what earlier attempts changed."""
        backoff = Backoff(self.retry)
        before = 0  # changed by attempts that broke off
        while True:
            stream = getattr(self._operations, method)(request, timeout=BULK_TIMEOUT_SECONDS)
            changed = 0
            try:
                for message in stream:
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
                time.sleep(calls.retry_pause(error, RETRY_UNAVAILABLE, backoff))
                before += changed
            finally:
                stream.cancel()

    def set_queue_paused(self, name: str, paused: bool) -> pb.QueueConfig:
        """PauseQueue or ResumeQueue; the queue's configuration after."""
        if paused:
            reply: opb.PauseQueueResponse = self._unary(
                self._operations.PauseQueue, opb.PauseQueueRequest(name=name)
            )
            return reply.queue
        resumed: opb.ResumeQueueResponse = self._unary(
            self._operations.ResumeQueue, opb.ResumeQueueRequest(name=name)
        )
        return resumed.queue

    # --- schedules (ScheduleService) -------------------------------------------------------

    def set_schedule(self, spec: spb.ScheduleSpec) -> spb.SetScheduleResponse:
        request = spb.SetScheduleRequest(spec=spec)
        reply: spb.SetScheduleResponse = self._unary(self._schedules.SetSchedule, request)
        return reply

    def get_schedule(self, name: str) -> spb.GetScheduleResponse:
        request = spb.GetScheduleRequest(name=name)
        reply: spb.GetScheduleResponse = self._unary(
            self._schedules.GetSchedule, request, read=True
        )
        return reply

    def list_schedules(
        self, page_size: int = 0, page_token: str = "", workflow_name: str = ""
    ) -> spb.ListSchedulesResponse:
        request = spb.ListSchedulesRequest(
            page_size=page_size, page_token=page_token, workflow_name=workflow_name
        )
        reply: spb.ListSchedulesResponse = self._unary(
            self._schedules.ListSchedules, request, read=True
        )
        return reply

    def pause_schedule(self, name: str) -> spb.Schedule:
        request = spb.PauseScheduleRequest(name=name)
        return self._unary(self._schedules.PauseSchedule, request).schedule

    def resume_schedule(self, name: str) -> spb.Schedule:
        request = spb.ResumeScheduleRequest(name=name)
        return self._unary(self._schedules.ResumeSchedule, request).schedule

    def delete_schedule(self, name: str) -> bool:
        request = spb.DeleteScheduleRequest(name=name)
        return bool(self._unary(self._schedules.DeleteSchedule, request).deleted)

    def trigger_schedule(self, name: str, workflow_id: str = "") -> pb.Workflow:
        """Start the schedule's workflow now under `workflow_id` (generated here when not
        given, so that a retry after a lost reply finds the same workflow)."""
        request = spb.TriggerScheduleRequest(
            name=name, workflow_id=workflow_id or schedules.manual_workflow_id(name)
        )
        reply: spb.TriggerScheduleResponse = self._unary(self._schedules.TriggerSchedule, request)
        return reply.workflow

    def start_workflow(
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
        """Start (or take over, with an `executor_id`) a workflow; `timeout` in seconds
        cancels it if it has not finished by then. With `queue_name` it is enqueued for a
        worker serving the queue; with `parent` it is started as that step's child."""
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
        return self._hot("start_workflow", self._stub.StartWorkflow, request)

    def history(self, started: pb.StartWorkflowResponse) -> list[pb.Step]:
        """The full step history of a started workflow, paging past a truncated one."""
        return _drive.run(specs.history(started), self)

    def run_step(self, request: pb.RunStepRequest) -> pb.RunStepResponse:
        return self._hot("run_step", self._stub.RunStep, request)

    def set_event(self, request: pb.SetEventRequest) -> pb.SetEventResponse:
        return self._hot("set_event", self._stub.SetEvent, request)

    def set_attributes(self, request: pb.SetAttributesRequest) -> pb.SetAttributesResponse:
        """SetAttributes (unary): merge search attributes into a running workflow's, as
        its step."""
        reply: pb.SetAttributesResponse = self._unary(self._stub.SetAttributes, request)
        return reply

    def finish_workflow(self, request: pb.FinishWorkflowRequest) -> pb.FinishWorkflowResponse:
        return self._hot("finish_workflow", self._stub.FinishWorkflow, request)

    def get_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        reply = self._unary(self._stub.GetWorkflow, request, read=True)
        return reply.workflow

    def await_workflow(self, workflow_id: str, timeout: float) -> pb.AwaitWorkflowResponse:
        """Wait up to `timeout` seconds; a retry waits only for what is left of it."""
        deadline = Deadline(timeout)

        def attempt() -> pb.AwaitWorkflowResponse:
            left = deadline.left()
            request = pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(left))
            reply: pb.AwaitWorkflowResponse = self._stub.AwaitWorkflow(
                request, timeout=left + WAIT_MARGIN_SECONDS
            )
            return reply

        return _call(attempt, self.retry, RETRY_UNAVAILABLE)

    def record_step_attempt(self, request: pb.RecordStepAttemptRequest) -> None:
        self._hot("record_step_attempt", self._stub.RecordStepAttempt, request)

    def send(self, request: pb.SendRequest) -> pb.SendResponse:
        """Retried safely only with an idempotency key or a caller (the SDK sets one)."""
        return self._unary(self._stub.Send, request)

    def recv(self, request: pb.RecvRequest) -> pb.RecvResponse:
        """Wait up to `request.timeout` for a message. A retry sends what is left of it,
        though the coordinator keeps the deadline the first call recorded anyway."""
        deadline = Deadline(request.timeout.ToNanoseconds() / 1e9)

        def attempt() -> pb.RecvResponse:
            left = deadline.left()
            retry = calls.recv_retry(request, left)
            reply: pb.RecvResponse = self._stub.Recv(retry, timeout=left + WAIT_MARGIN_SECONDS)
            return reply

        return _call(attempt, self.retry, RETRY_UNAVAILABLE)

    def sleep(self, request: pb.SleepRequest) -> pb.SleepResponse:
        return self._unary(self._stub.Sleep, request)

    def heartbeat(
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
        return self._unary(self._stub.Heartbeat, request)

    def configure_queue(self, queue: pb.QueueConfig) -> pb.QueueConfig:
        request = pb.ConfigureQueueRequest(queue=queue)
        return self._unary(self._stub.ConfigureQueue, request).queue

    def get_queue(self, name: str, max_partitions: int = 0) -> pb.GetQueueResponse:
        request = pb.GetQueueRequest(name=name, max_partitions=max_partitions)
        reply: pb.GetQueueResponse = self._unary(self._stub.GetQueue, request, read=True)
        return reply

    def poll_work(
        self,
        executor_id: str,
        max_workflows: int,
        wait: float,
        *,
        interrupt: threading.Event | None = None,
    ) -> list[pb.Workflow]:
        """Claim up to `max_workflows`, waiting up to `wait` seconds for some.

        Setting `interrupt` cancels the wait (returning []); the call sets it itself when it
        ends. Not retried here: a reply lost after the coordinator claimed would strand those
        workflows, so the deadline is generous and the caller simply polls again.
        """
        request = pb.PollWorkRequest(
            executor_id=executor_id, max_workflows=max_workflows, timeout=duration(wait)
        )
        call = self._stub.PollWork.future(request, timeout=wait + WAIT_MARGIN_SECONDS)
        if interrupt is not None:
            call.add_done_callback(lambda _: interrupt.set())
            interrupt.wait()
            call.cancel()  # no effect once it is done
        try:
            reply = call.result()
        except grpc.FutureCancelledError:
            return []
        except grpc.RpcError as error:
            raise CallFailed.from_rpc_error(error).typed() from None
        return list(reply.workflows)

    def cancel_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.CancelWorkflowRequest(workflow_id=workflow_id)
        return self._unary(self._stub.CancelWorkflow, request).workflow

    def resume_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.ResumeWorkflowRequest(workflow_id=workflow_id)
        return self._unary(self._stub.ResumeWorkflow, request).workflow

    def fork_workflow(
        self,
        workflow_id: str,
        start_step_id: int,
        new_workflow_id: str = "",
        app_version: str = "",
    ) -> pb.Workflow:
        """Fork from `start_step_id` (see `calls.fork_request`)."""
        request = calls.fork_request(workflow_id, start_step_id, new_workflow_id, app_version)
        return self._unary(self._stub.ForkWorkflow, request).workflow

    def list_workflows(self, request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsResponse:
        return self._unary(self._stub.ListWorkflows, request, read=True)

    def list_steps(
        self, workflow_id: str, after_step_id: int = 0, page_size: int = 0
    ) -> pb.ListStepsResponse:
        request = pb.ListStepsRequest(
            workflow_id=workflow_id, after_step_id=after_step_id, page_size=page_size
        )
        return self._unary(self._stub.ListSteps, request, read=True)

    def list_events(self, workflow_id: str) -> list[pb.Event]:
        """Every event of the workflow with its latest value (all pages)."""
        events: list[pb.Event] = []
        token = ""
        while True:
            request = pb.ListEventsRequest(workflow_id=workflow_id, page_token=token)
            reply = self._unary(self._stub.ListEvents, request, read=True)
            events.extend(reply.events)
            token = reply.next_page_token
            if not token:
                return events

    def get_event(
        self,
        workflow_id: str,
        key: str,
        timeout: float,
        *,
        follow: bool,
        caller: pb.StepRef | None = None,
        from_first: bool = False,
    ) -> Iterator[pb.GetEventResponse]:
        """The GetEvent stream's messages; cancelled if the caller stops iterating early.

        If the coordinator becomes unavailable the call is made again, for what is left of
        `timeout`; a follow resumes after the last version it yielded (`after_version`),
        so no value is lost or repeated across a coordinator restart. With `caller` the read
        is checkpointed as that workflow step; a retry keeps the deadline it recorded.
        A follow `from_first` streams the event's whole history from version 1 first
        (GetEventRequest.from_first_value), then every later value.
        """
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
                for message in stream:
                    backoff.reset()
                    if message.HasField("event"):
                        after = message.event.version
                    yield message
                return
            except grpc.RpcError as error:
                time.sleep(calls.retry_pause(error, RETRY_UNAVAILABLE, backoff))
            finally:
                stream.cancel()

    def first_event(
        self, workflow_id: str, key: str, timeout: float, caller: pb.StepRef | None = None
    ) -> pb.EventValue | None:
        """The event's value once it is set (None when `timeout` passes first)."""
        for message in self.get_event(workflow_id, key, timeout, follow=False, caller=caller):
            if message.HasField("event"):
                return message.event
        return None

    def watch_workflows(
        self, where: pb.ListWorkflowsRequest, *, after: str = "", timeout: float | None = None
    ) -> Iterator[pb.WatchWorkflowsResponse]:
        """The WatchWorkflows stream's messages (changes, then `timed_out` once `timeout`
        passes; without one the stream is reopened forever); cancelled if the caller stops
        iterating early. If the coordinator becomes unavailable the stream is opened again
        after the last change it yielded (or the first stream's start), so no change is
        lost or repeated. A cursor that has expired raises CoordinatorError
        (CURSOR_EXPIRED)."""
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
            try:
                if not cursor:  # the start, to resume from if cut before any change
                    start = dict(stream.initial_metadata() or ()).get(WATCH_START_METADATA)
                    cursor = str(start or "")
                for message in stream:
                    backoff.reset()
                    if message.HasField("change"):
                        cursor = message.change.cursor
                    elif deadline is None:
                        break  # the server's longest wait passed: open it again
                    yield message
                else:
                    return
                continue
            except grpc.RpcError as error:
                time.sleep(calls.retry_pause(error, RETRY_UNAVAILABLE, backoff))
            finally:
                stream.cancel()


_default: Client | None = None
_default_lock = threading.Lock()


def configure(
    target: str | None = None,
    *,
    token: str | None = None,
    tls: TLS | None = None,
    retry: RetryPolicy | None = None,
    session: bool | None = None,
    codecs: Iterable[PayloadCodec] | None = None,
) -> Client:
    """Point the SDK at a coordinator; arguments as for `Client`. `codecs`: the payload
    codecs of this process (see `durable.set_payload_codecs`; None leaves them as they are)."""
    global _default
    if codecs is not None:
        _payloads.set_codecs(codecs)
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Client(target, token=token, tls=tls, retry=retry, session=session)
        return _default


def default_client() -> Client:
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
