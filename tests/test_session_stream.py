"""Session streams: many workflows' hot-path calls over one bidirectional stream.

On the wire (raw stub): calls run concurrently and are answered by request_id in any
order, a call's error is its own response and the stream goes on, errors equal the unary
RPC's, a request_id reused in flight ends the stream, the stream is authenticated by its
metadata, shutdown ends it with UNAVAILABLE. BatchedSession: the calls of one message are
answered each as Session answers it, responses ready together come in one message, a
request_id repeated within a message ends the stream. Through the SDK: workflows run over
BatchedSession by default (unary when switched off, or when the coordinator lacks it), and
a coordinator killed while a step's call is in flight is ridden out: the call is retried
and every step is recorded once.
"""

from __future__ import annotations

import functools
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

import grpc
import psycopg
import pytest

import durable
from coordinator.session import MAX_IN_FLIGHT
from durable._client import Client
from durable._failures import CallFailed
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    Activity,
    Coordinator,
    Stub,
    error_info,
    eventually,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    start_pending,
    value_of,
)

RETRY = durable.RetryPolicy(total_seconds=20.0)
TOKENS = {"team-a": "session-token-a-51f0", "team-b": "session-token-b-9e2c"}


Req = TypeVar("Req", pb.SessionRequest, pb.BatchedSessionRequest)
Msg = TypeVar("Msg", pb.SessionResponse, pb.BatchedSessionResponse)
Msg_co = TypeVar("Msg_co", covariant=True)


class _StreamCall(Protocol[Msg_co]):
    """What the test needs of a gRPC stream-stream call."""

    def __iter__(self) -> Iterator[Msg_co]: ...
    def cancel(self) -> bool: ...


class _RawStream(Generic[Req, Msg]):
    """A raw bidirectional stream: requests are queued for gRPC to send, and a reader
    thread collects every message, then the RpcError that ended the stream (or None when
    it ended OK), for the test to take within a bounded wait."""

    def __init__(self, open_call: Callable[[Iterator[Req]], _StreamCall[Msg]]) -> None:
        self._requests: queue.SimpleQueue[Req | None] = queue.SimpleQueue()
        self._messages: queue.SimpleQueue[Msg | grpc.RpcError | None] = queue.SimpleQueue()
        self.call: _StreamCall[Msg] = open_call(self._iterate())
        threading.Thread(target=self._read, daemon=True).start()

    def _iterate(self) -> Iterator[Req]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for message in self.call:
                self._messages.put(message)
            self._messages.put(None)  # ended OK
        except grpc.RpcError as error:
            self._messages.put(error)

    def next(self, timeout: float = PROMPT) -> Msg | grpc.RpcError | None:
        return self._messages.get(timeout=timeout)

    def ended_with(self, timeout: float = PROMPT) -> grpc.RpcError:
        item = self.next(timeout)
        assert isinstance(item, grpc.RpcError), item
        return item

    def close_sending(self) -> None:
        self._requests.put(None)

    def cancel(self) -> None:
        self._requests.put(None)
        self.call.cancel()


class Session(_RawStream[pb.SessionRequest, pb.SessionResponse]):
    """A raw Session stream: `send` queues a request, `next` takes the next response (or
    the RpcError that ended the stream) within a bounded wait."""

    def __init__(self, stub: Stub, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(lambda requests: stub.Session(requests, metadata=metadata, timeout=60))

    def send(self, request_id: int, **call: Any) -> None:
        self._requests.put(pb.SessionRequest(request_id=request_id, **call))

    def response(self, timeout: float = PROMPT) -> pb.SessionResponse:
        item = self.next(timeout)
        assert isinstance(item, pb.SessionResponse), item
        return item


def run_step(workflow_id: str, step_id: int, value: Any = None) -> pb.RunStepRequest:
    return pb.RunStepRequest(
        workflow_id=workflow_id, step_id=step_id, name=f"s{step_id}", output=payload(value)
    )


class RowLock:
    """Holds the workflow row FOR UPDATE in its own transaction: RunStep's write guard (FOR
    SHARE) waits on it, which keeps that call in flight for as long as the test wants."""

    def __init__(self, database_url: str, workflow_id: str) -> None:
        self.conn = psycopg.connect(database_url)
        self.conn.execute(
            "SELECT 1 FROM durable.workflows WHERE workflow_id = %s FOR UPDATE", (workflow_id,)
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


# --- on the wire -----------------------------------------------------------------------------


def test_calls_run_concurrently_and_are_answered_by_request_id(
    stub: Stub, database_url: str, activity: Activity
) -> None:
    blocked = start_pending(stub)
    others = [start_pending(stub) for _ in range(20)]
    session = Session(stub)
    lock = RowLock(database_url, blocked)
    try:
        session.send(1, run_step=run_step(blocked, 1, "late"))
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)  # 1 is in flight
        # FinishWorkflow does not share RunStep's commit batches: it can overtake.
        session.send(
            2, finish_workflow=pb.FinishWorkflowRequest(workflow_id=others[0], output=payload(0))
        )
        first = session.response()
        assert first.request_id == 2 and first.finish_workflow.workflow.workflow_id == others[0]
        lock.release()
        assert value_of(session.response().run_step.step.output) == "late"
        # Many in flight at once, each answered once, with its own result.
        for n, workflow_id in enumerate(others[1:], start=10):
            session.send(n, run_step=run_step(workflow_id, 1, n))
        answers = {r.request_id: r for r in (session.response() for _ in others[1:])}
        assert set(answers) == set(range(10, 10 + len(others) - 1))
        for n in range(10, 10 + len(others) - 1):
            step = answers[n].run_step.step
            assert (step.step_id, value_of(step.output)) == (1, n)
        session.close_sending()
        assert session.next() is None  # half-closed and everything answered: ends OK
    finally:
        session.cancel()
        if not lock.conn.closed:
            lock.release()


def test_each_error_answers_its_own_request_like_the_unary_call(stub: Stub) -> None:
    workflow_id = start_pending(stub)
    bad = [
        run_step("", 1),  # INVALID_ARGUMENT workflow_id
        run_step(new_id(), 1),  # NOT_FOUND
        pb.RunStepRequest(workflow_id=workflow_id, step_id=1, name="s1"),  # no outcome
    ]
    session = Session(stub)
    try:
        for n, request in enumerate(bad, start=1):
            session.send(n, run_step=request)
        session.send(len(bad) + 1)  # no call at all
        errors = {r.request_id: r.error for r in (session.response() for _ in range(4))}
        for n, request in enumerate(bad, start=1):
            unary = rpc_error(functools.partial(stub.RunStep, request, timeout=RPC_TIMEOUT))
            info = error_info(unary)
            assert errors[n] == pb.CallError(
                code=unary.code().value[0],
                message=unary.details() or "",
                reason=info.reason,
                metadata=dict(info.metadata),
            )
        assert errors[4].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert errors[4].metadata["field"] == "call"
        # The stream goes on after them.
        session.send(9, run_step=run_step(workflow_id, 1, "ok"))
        assert session.response().run_step.already_recorded is False
    finally:
        session.cancel()


def test_a_request_id_reused_while_in_flight_ends_the_stream(
    stub: Stub, database_url: str, activity: Activity
) -> None:
    workflow_id = start_pending(stub)
    session = Session(stub)
    lock = RowLock(database_url, workflow_id)
    try:
        session.send(7, run_step=run_step(workflow_id, 1))
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)
        session.send(7, run_step=run_step(workflow_id, 2))
        ended = session.ended_with()
        assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(ended).metadata["field"] == "request_id"
    finally:
        lock.release()
        session.cancel()


def test_a_request_id_may_be_reused_once_answered(stub: Stub) -> None:
    workflow_id = start_pending(stub)
    session = Session(stub)
    try:
        for step_id in (1, 2):
            session.send(5, run_step=run_step(workflow_id, step_id))
            assert session.response().run_step.step.step_id == step_id
    finally:
        session.cancel()


class Batches(_RawStream[pb.BatchedSessionRequest, pb.BatchedSessionResponse]):
    """A raw BatchedSession stream: `send` queues one message of calls, `results` collects
    responses (from however many messages) within a bounded wait."""

    def __init__(self, stub: Stub) -> None:
        super().__init__(lambda requests: stub.BatchedSession(requests, timeout=60))
        self.messages_received = 0

    def send(self, *calls: pb.SessionRequest) -> None:
        self._requests.put(pb.BatchedSessionRequest(calls=calls))

    def results(self, count: int, timeout: float = PROMPT) -> dict[int, pb.SessionResponse]:
        """The next `count` responses, by request_id; queue.Empty if a wait for the next
        message passes `timeout`."""
        found: dict[int, pb.SessionResponse] = {}
        while len(found) < count:
            message = self.next(timeout)
            assert isinstance(message, pb.BatchedSessionResponse), message
            self.messages_received += 1
            for result in message.results:
                assert result.request_id not in found, "answered twice"
                found[result.request_id] = result
        assert len(found) == count, f"{len(found)} responses, expected {count}"
        return found


def test_a_batch_is_answered_call_by_call_in_batches(stub: Stub) -> None:
    workflows = [start_pending(stub) for _ in range(40)]
    unknown = new_id()
    batches = Batches(stub)
    try:
        calls = [
            pb.SessionRequest(request_id=100 + n, run_step=run_step(workflow_id, 1, n))
            for n, workflow_id in enumerate(workflows)
        ]
        calls.append(pb.SessionRequest(request_id=1, run_step=run_step(unknown, 1)))
        calls.append(pb.SessionRequest(request_id=2))  # no call at all
        batches.send(*calls)
        answers = batches.results(len(calls))
        for n in range(len(workflows)):
            step = answers[100 + n].run_step.step
            assert (step.step_id, value_of(step.output)) == (1, n)
        not_found = rpc_error(functools.partial(stub.RunStep, run_step(unknown, 1)))
        assert not_found.code() == grpc.StatusCode.NOT_FOUND
        assert answers[1].error.code == not_found.code().value[0]
        assert answers[1].error.reason == error_info(not_found).reason
        assert answers[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answers[2].error.metadata["field"] == "call"
        # 42 calls committed in a few batches: their responses share messages.
        assert batches.messages_received < len(calls) / 2
        # An empty message does nothing; the stream goes on. A replay answers as unary does.
        batches.send()
        batches.send(pb.SessionRequest(request_id=3, run_step=run_step(workflows[0], 1, "x")))
        again = batches.results(1)[3].run_step
        assert again.already_recorded and value_of(again.step.output) == 0
    finally:
        batches.cancel()


def test_past_the_in_flight_limit_the_stream_is_not_read_until_calls_finish(
    stub: Stub, database_url: str, activity: Activity
) -> None:
    blocked = start_pending(stub)
    free = start_pending(stub)
    over = MAX_IN_FLIGHT + 50
    batches = Batches(stub)
    lock = RowLock(database_url, blocked)
    try:
        # More calls than may run at once, all held by the row lock (the first one waits
        # on it in the database, the others behind it in the commit queue).
        batches.send(
            *(
                pb.SessionRequest(request_id=n, run_step=run_step(blocked, n, n))
                for n in range(1, over + 1)
            )
        )
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)
        # A call that would be answered at once (it shares nothing with the held ones, not
        # even their commit queue): the coordinator does not read it while full.
        finish = pb.FinishWorkflowRequest(workflow_id=free, output=payload("free"))
        batches.send(pb.SessionRequest(request_id=0, finish_workflow=finish))
        with pytest.raises(queue.Empty):
            batches.results(1, timeout=1.0)
        lock.release()
        answers = batches.results(over + 1)
        assert answers[0].finish_workflow.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
        assert all(answers[n].run_step.step.step_id == n for n in range(1, over + 1))
    finally:
        if not lock.conn.closed:
            lock.release()
        batches.cancel()


def test_a_batch_larger_than_the_payload_limit_is_accepted(database_url: str) -> None:
    """A batch of many small calls may be far larger than one payload may: with a 1 KiB
    payload limit a 600 KiB message of 600 calls is answered call by call (the SDK sends up
    to 1 MiB per message), and an oversized payload still fails alone."""
    with running_coordinator(database_url, "--max-payload-bytes", "1024") as small:
        workflow_id = start_pending(small.stub)
        batches = Batches(small.stub)
        try:
            filler = "x" * 1000
            calls = [
                pb.SessionRequest(request_id=n, run_step=run_step(workflow_id, n, filler))
                for n in range(1, 601)
            ]
            calls.append(
                pb.SessionRequest(request_id=999, run_step=run_step(workflow_id, 999, "y" * 2000))
            )
            assert sum(call.ByteSize() for call in calls) > 600 * 1024
            batches.send(*calls)
            answers = batches.results(len(calls))
            assert all(answers[n].run_step.step.step_id == n for n in range(1, 601))
            assert answers[999].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        finally:
            batches.cancel()


def test_a_request_id_twice_in_one_batch_ends_the_stream(stub: Stub) -> None:
    workflow_id = start_pending(stub)
    batches = Batches(stub)
    try:
        batches.send(
            pb.SessionRequest(request_id=4, run_step=run_step(workflow_id, 1)),
            pb.SessionRequest(request_id=4, run_step=run_step(workflow_id, 2)),
        )
        ended = batches.ended_with()
        assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(ended).metadata["field"] == "request_id"
    finally:
        batches.cancel()


def test_a_stream_rides_out_a_lost_listen_connection(database_url: str, activity: Activity) -> None:
    """When its LISTEN connection comes back, the coordinator wakes every waiter to read
    again, a stream's own shutdown watcher too: that wake-up must not stall the stream."""
    with running_coordinator(database_url) as alone:
        workflow_id = start_pending(alone.stub)
        batches = Batches(alone.stub)
        try:
            batches.send(pb.SessionRequest(request_id=1, run_step=run_step(workflow_id, 1)))
            assert batches.results(1)[1].run_step.step.step_id == 1
            listeners = eventually(activity.listen_sessions, timeout=PROMPT)
            activity.terminate(listeners)
            eventually(lambda: "LISTEN connection lost" in alone.log(), timeout=PROMPT)

            def reconnected() -> bool:
                current = activity.listen_sessions()
                return len(current) == len(listeners) and not set(current) & set(listeners)

            eventually(reconnected, timeout=PROMPT)
            batches.send(pb.SessionRequest(request_id=2, run_step=run_step(workflow_id, 2)))
            assert batches.results(1)[2].run_step.step.step_id == 2
            assert (
                alone.stub.GetWorkflow(
                    pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
                ).workflow.status
                == pb.WORKFLOW_STATUS_PENDING
            )
        finally:
            batches.cancel()


@pytest.fixture(scope="module")
def token_coordinator(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Coordinator]:
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens_file.write_text("".join(f"{ns}={token}\n" for ns, token in TOKENS.items()))
    process = Coordinator(database_url, "--tokens-file", str(tokens_file))
    try:
        process.wait_serving()
        yield process
    finally:
        process.stop()


def test_the_stream_is_authenticated_by_its_metadata(token_coordinator: Coordinator) -> None:
    stub = token_coordinator.stub
    anonymous = Session(stub)
    try:
        anonymous.send(1, start_workflow=pb.StartWorkflowRequest(workflow_id=new_id(), name="w"))
        ended = anonymous.ended_with()
        assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(ended).reason == "UNAUTHENTICATED"
    finally:
        anonymous.cancel()

    def auth(team: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {TOKENS[team]}"),)

    workflow_id = new_id()
    session = Session(stub, auth("team-a"))
    try:
        start = pb.StartWorkflowRequest(workflow_id=workflow_id, name="w")
        session.send(1, start_workflow=start)
        assert session.response().start_workflow.created
    finally:
        session.cancel()
    # Started in team-a's namespace: team-b cannot see it.
    request = pb.GetWorkflowRequest(workflow_id=workflow_id)
    stub.GetWorkflow(request, metadata=auth("team-a"), timeout=RPC_TIMEOUT)
    other = rpc_error(lambda: stub.GetWorkflow(request, metadata=auth("team-b"), timeout=5))
    assert other.code() == grpc.StatusCode.NOT_FOUND


def test_shutdown_ends_the_stream_with_unavailable(database_url: str) -> None:
    process = Coordinator(database_url, "--shutdown-grace", "10")
    try:
        process.wait_serving()
        workflow_id = start_pending(process.stub)
        session = Session(process.stub)
        session.send(1, run_step=run_step(workflow_id, 1))
        assert session.response().run_step.step.step_id == 1
        signalled = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        ended = session.ended_with()
        assert ended.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(ended).reason == "SHUTTING_DOWN"
        assert time.monotonic() - signalled < 5  # at once, not when the grace ends
        assert process.process.wait(timeout=10) == 0
    finally:
        process.stop()


# --- through the SDK -------------------------------------------------------------------------


@durable.step(name="tests.session.double")
def double(i: int) -> int:
    return 2 * i


@durable.workflow(name="tests.session.doubles")
def doubles(n: int) -> int:
    return sum(double(i) for i in range(n))


def _refuse_unary(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the hot path's unary RPCs fail, so only the Session stream can carry them."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unary call made")

    for method in ("StartWorkflow", "RunStep", "SetEvent", "FinishWorkflow"):
        monkeypatch.setattr(client._stub, method, refuse)


def test_the_sdk_runs_workflows_over_the_session_stream(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(coordinator.address, retry=RETRY)
    _refuse_unary(client, monkeypatch)
    monkeypatch.setattr(durable._workflow, "default_client", lambda: client)
    try:
        handles = [durable.start_workflow(doubles, n) for n in range(1, 21)]
        assert [h.result(timeout=30) for h in handles] == [n * (n - 1) for n in range(1, 21)]
        # A call's error is raised as the unary call's typed error.
        with pytest.raises(durable.WorkflowNotFoundError):
            client.run_step(run_step(new_id(), 1))
    finally:
        client.close()
    with pytest.raises(durable.CoordinatorError) as closed:
        client.run_step(run_step(new_id(), 1))
    assert closed.value.code == grpc.StatusCode.CANCELLED


def test_a_call_that_times_out_is_forgotten_and_the_stream_goes_on(
    coordinator: Coordinator, database_url: str
) -> None:
    client = Client(coordinator.address, retry=RETRY)
    workflow_id = start_pending(coordinator.stub)
    lock = RowLock(database_url, workflow_id)
    try:
        stream = client._session()
        with pytest.raises(CallFailed) as late:
            stream.call("run_step", run_step(workflow_id, 1, "late"), timeout=0.2)
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not stream._pending  # nothing left waiting for it
        lock.release()
        # Its late response is dropped; the stream carries the next calls as before.
        again = client.run_step(run_step(workflow_id, 1, "again"))
        assert again.already_recorded and value_of(again.step.output) == "late"
        assert client._session() is stream and not stream._pending
    finally:
        if not lock.conn.closed:
            lock.release()
        client.close()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_the_session_can_be_switched_off(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("DURABLE_SESSION", "0")
    client = Client(coordinator.address, session=False if how == "argument" else None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("session opened")

    monkeypatch.setattr(client._stub, "BatchedSession", refuse)
    monkeypatch.setattr(durable._workflow, "default_client", lambda: client)
    try:
        assert doubles(4) == 12
    finally:
        client.close()


class _UnaryOnlyCoordinator:
    """A gRPC server in this process that forwards every unary RPC to a real coordinator
    and has no session streams: what the SDK meets at a coordinator from before them."""

    def __init__(self, target: Coordinator) -> None:
        forward = target.stub
        service = pb.DESCRIPTOR.services_by_name["CoordinatorService"]
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            call = getattr(forward, method.name)

            def handle(request: Any, context: grpc.ServicerContext, call: Any = call) -> Any:
                try:
                    return call(request, timeout=RPC_TIMEOUT)
                except grpc.RpcError as error:
                    context.abort(error.code(), error.details() or "")

            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=getattr(pb, method.input_type.name).FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()


def test_a_coordinator_without_session_streams_gets_unary_calls(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = _UnaryOnlyCoordinator(coordinator)
    client = Client(older.address, retry=RETRY)
    monkeypatch.setattr(durable._workflow, "default_client", lambda: client)
    try:
        assert doubles(5) == 20  # the first call meets UNIMPLEMENTED, then all go unary
        assert client._use_session is False
        assert doubles(3) == 6
    finally:
        client.close()
        older.server.stop(grace=None)


STEPS = 5
RAN: list[int] = []
REACHED = threading.Event()
GO = threading.Event()


@durable.step(name="tests.session.counted")
def counted(i: int) -> int:
    RAN.append(i)
    if i == 2:
        REACHED.set()
        assert GO.wait(timeout=60)
    return i


@durable.workflow(name="tests.session.restarted")
def restarted() -> list[int]:
    return [counted(i) for i in range(1, STEPS + 1)]


def test_a_coordinator_killed_mid_call_is_ridden_out_and_every_step_recorded_once(
    database_url: str, activity: Activity, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Coordinator(database_url)
    second: Coordinator | None = None
    client = Client(first.address, retry=RETRY)
    _refuse_unary(client, monkeypatch)
    monkeypatch.setattr(durable._workflow, "default_client", lambda: client)
    RAN.clear()
    lock: RowLock | None = None
    try:
        first.wait_serving()
        handle = durable.start_workflow(restarted)
        assert REACHED.wait(timeout=PROMPT)
        # Step 2's RunStep waits on the row lock: in flight when the coordinator dies.
        lock = RowLock(database_url, handle.workflow_id)
        GO.set()
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)
        first.kill()
        # The dead coordinator's statement may still commit once the lock is gone: then
        # the retried call finds step 2 recorded (first writer wins) and nothing repeats.
        lock.release()
        second = Coordinator(database_url, port=first.port)
        second.wait_serving()
        assert handle.result(timeout=30) == list(range(1, STEPS + 1))
        assert list(range(1, STEPS + 1)) == RAN  # no step body ran twice
        recorded = second.stub.ListSteps(
            pb.ListStepsRequest(workflow_id=handle.workflow_id), timeout=RPC_TIMEOUT
        ).steps
        assert [s.step_id for s in recorded] == list(range(1, STEPS + 1))
        assert [value_of(s.output) for s in recorded] == list(range(1, STEPS + 1))
    finally:
        GO.set()
        if lock is not None and not lock.conn.closed:
            lock.release()
        client.close()
        first.stop()
        if second is not None:
            second.stop()
