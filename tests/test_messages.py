"""Messages over real gRPC and Postgres: Send (idempotent, checkpointed from a workflow),
Recv (consumes each message exactly once, in order, as a step; waits, times out, replays),
wake-ups across coordinators, and the SDK's durable.send / durable.recv."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    WAIT_PARKED_SQL,
    Activity,
    Coordinator,
    Stub,
    duration,
    error_info,
    finish,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    start_pending,
    value_of,
)
from tests.test_cli import fails, ok, run

# --- helpers -------------------------------------------------------------------------------


def start(stub: Stub, workflow_id: str | None = None, name: str = "messages.flow") -> str:
    return start_pending(stub, workflow_id, name)


def send(
    stub: Stub,
    destination: str,
    value: Any,
    topic: str = "",
    *,
    key: str = "",
    caller: pb.StepRef | None = None,
) -> pb.SendResponse:
    return stub.Send(
        pb.SendRequest(
            destination_workflow_id=destination,
            topic=topic,
            message=payload(value),
            idempotency_key=key,
            caller=caller,
        ),
        timeout=RPC_TIMEOUT,
    )


def recv(
    stub: Stub,
    workflow_id: str,
    step_id: int,
    timeout: float | None,
    topic: str = "",
    *,
    deadline: float | None = None,
) -> pb.RecvResponse:
    request = pb.RecvRequest(workflow_id=workflow_id, step_id=step_id, topic=topic)
    if timeout is not None:
        request.timeout.CopyFrom(duration(timeout))
    wait = deadline if deadline is not None else (timeout or 0) + RPC_TIMEOUT
    return stub.Recv(request, timeout=wait)


def message_rows(database_url: str, destination: str) -> list[tuple[Any, ...]]:
    """(topic, data as JSON, consumed_step_id) of the destination's messages, in send order."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT topic, convert_from(data, 'UTF8'), consumed_step_id FROM durable.messages"
            " WHERE destination_id = %s ORDER BY message_id",
            (destination,),
        ).fetchall()
    return [tuple(row) for row in found]


def parked(activity: Activity, since: Any, count: int = 1) -> None:
    activity.wait_parked(since, WAIT_PARKED_SQL, count)


# --- Send and Recv on the wire -------------------------------------------------------------


def test_a_message_sent_before_the_workflow_starts_waits_for_it(
    stub: Stub, database_url: str
) -> None:
    workflow_id = new_id("early")
    assert not send(stub, workflow_id, {"hello": 1}).already_sent
    start(stub, workflow_id)

    first = recv(stub, workflow_id, 1, 0)
    assert not first.already_recorded
    assert first.step.kind == pb.STEP_KIND_RECV
    assert first.step.name == ""
    assert value_of(first.step.output) == {"hello": 1}
    assert not first.step.timed_out
    assert first.step.HasField("deadline")

    replay = recv(stub, workflow_id, 1, 0)
    assert replay.already_recorded
    assert replay.step == first.step
    assert message_rows(database_url, workflow_id) == [("", '{"hello": 1}', 1)]


def test_a_send_with_a_used_idempotency_key_delivers_once(stub: Stub, database_url: str) -> None:
    workflow_id = start(stub)
    assert not send(stub, workflow_id, "once", key="k-1").already_sent
    assert send(stub, workflow_id, "twice", key="k-1").already_sent
    # The key is per destination: another workflow may get a message with the same key.
    other = new_id("other")
    assert not send(stub, other, "elsewhere", key="k-1").already_sent

    assert value_of(recv(stub, workflow_id, 1, 0).step.output) == "once"
    assert recv(stub, workflow_id, 2, 0).step.timed_out
    assert message_rows(database_url, workflow_id) == [("", '"once"', 1)]


def test_messages_are_received_in_order_exactly_once(stub: Stub, database_url: str) -> None:
    workflow_id = start(stub)
    count = 20
    for n in range(count):
        send(stub, workflow_id, n, "numbers")
    send(stub, workflow_id, "other topic", "letters")

    got = [value_of(recv(stub, workflow_id, n, 0, "numbers").step.output) for n in range(1, 21)]
    assert got == list(range(count))
    assert recv(stub, workflow_id, count + 1, 0, "numbers").step.timed_out
    assert value_of(recv(stub, workflow_id, count + 2, 0, "letters").step.output) == "other topic"

    found = message_rows(database_url, workflow_id)
    assert len(found) == count + 1  # none lost, none duplicated
    assert [row[2] for row in found] == [*range(1, count + 1), count + 2]


def test_a_recv_waits_for_a_message_and_is_woken_promptly(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start(stub)
    since = activity.now()
    waiting = pool.submit(recv, stub, workflow_id, 1, 60, "t")
    parked(activity, since)
    sent_at = time.monotonic()
    send(stub, workflow_id, "wake up", "t")
    reply = waiting.result(timeout=PROMPT)
    assert time.monotonic() - sent_at < PROMPT
    assert value_of(reply.step.output) == "wake up"


def test_a_send_on_another_coordinator_wakes_a_waiting_recv(
    stub: Stub, other_coordinator: Coordinator, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start(stub)
    since = activity.now()
    waiting = pool.submit(recv, stub, workflow_id, 1, 60)
    parked(activity, since)
    sent_at = time.monotonic()
    send(other_coordinator.stub, workflow_id, "from afar")
    reply = waiting.result(timeout=PROMPT)
    assert time.monotonic() - sent_at < PROMPT
    assert value_of(reply.step.output) == "from afar"


def test_concurrent_recvs_of_one_step_consume_one_message(
    stub: Stub,
    other_coordinator: Coordinator,
    activity: Activity,
    database_url: str,
    pool: ThreadPoolExecutor,
) -> None:
    workflow_id = start(stub)
    since = activity.now()
    # One caller per coordinator: the second is woken by the first's NOTIFY.
    first = pool.submit(recv, stub, workflow_id, 1, 60)
    second = pool.submit(recv, other_coordinator.stub, workflow_id, 1, 60)
    parked(activity, since, count=2)
    send(stub, workflow_id, "a")
    send(stub, workflow_id, "b")
    replies = [first.result(timeout=PROMPT), second.result(timeout=PROMPT)]

    assert sorted(r.already_recorded for r in replies) == [False, True]
    assert replies[0].step == replies[1].step
    assert value_of(replies[0].step.output) == "a"
    assert message_rows(database_url, workflow_id) == [("", '"a"', 1), ("", '"b"', None)]
    assert value_of(recv(stub, workflow_id, 2, 0).step.output) == "b"


def test_many_concurrent_recvs_of_one_step_lose_no_message(
    stub: Stub, database_url: str, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start(stub)
    for n in range(3):
        send(stub, workflow_id, n)
    replies = list(pool.map(lambda _: recv(stub, workflow_id, 1, 5), range(8)))
    assert sum(not r.already_recorded for r in replies) == 1
    assert {value_of(r.step.output) for r in replies} == {0}
    assert [row[2] for row in message_rows(database_url, workflow_id)] == [1, None, None]


def test_a_recv_timeout_is_recorded_and_replayed(stub: Stub, database_url: str) -> None:
    workflow_id = start(stub)
    began = time.monotonic()
    timed_out = recv(stub, workflow_id, 1, 0.3)
    assert 0.25 <= time.monotonic() - began < PROMPT
    assert timed_out.step.timed_out and not timed_out.already_recorded
    assert value_of(timed_out.step.output) is None

    send(stub, workflow_id, "late")
    replay = recv(stub, workflow_id, 1, 30)
    assert replay.already_recorded and replay.step == timed_out.step
    # The late message was not consumed by the replay: the next Recv gets it.
    assert message_rows(database_url, workflow_id) == [("", '"late"', None)]
    assert value_of(recv(stub, workflow_id, 2, 0).step.output) == "late"


def test_a_retried_recv_waits_only_for_what_is_left_of_its_first_deadline(stub: Stub) -> None:
    workflow_id = start(stub)
    began = time.time()
    # The client gives up after 0.5 s; the wait's 2 s deadline is recorded all the same.
    error = rpc_error(lambda: recv(stub, workflow_id, 1, 2.0, deadline=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    reply = recv(stub, workflow_id, 1, 60)
    ended = time.time()
    assert reply.step.timed_out
    recorded_deadline = reply.step.deadline.ToNanoseconds() / 1e9
    assert began + 1.9 <= recorded_deadline <= began + 2.0 + PROMPT
    assert ended < began + 2.0 + PROMPT  # not the 60 s the retry asked for


def test_cancelling_a_waiting_receiver_ends_its_recv(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start(stub)
    since = activity.now()
    waiting = pool.submit(recv, stub, workflow_id, 1, 60)
    parked(activity, since)
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    with pytest.raises(grpc.RpcError) as caught:
        waiting.result(timeout=PROMPT)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert (info.reason, info.metadata["status"]) == ("WORKFLOW_NOT_PENDING", "CANCELLED")


def test_a_coordinator_shutting_down_ends_a_waiting_recv_and_a_retry_keeps_the_deadline(
    database_url: str, stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start(stub)
    with running_coordinator(database_url) as doomed:
        since = activity.now()
        waiting = pool.submit(recv, doomed.stub, workflow_id, 1, 3.0)
        parked(activity, since)
        began = time.time()
        doomed.process.terminate()
        with pytest.raises(grpc.RpcError) as caught:
            waiting.result(timeout=PROMPT)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    reply = recv(stub, workflow_id, 1, 60)
    assert reply.step.timed_out
    assert time.time() < began + 3.0 + PROMPT


def test_recv_refuses_a_step_recorded_as_something_else(stub: Stub) -> None:
    workflow_id = start(stub)
    stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=1, name="charge", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    error = rpc_error(lambda: recv(stub, workflow_id, 1, 0))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "STEP_NAME_MISMATCH"
    # A Recv on one topic replayed on another is not the same operation either.
    recv(stub, workflow_id, 2, 0, "a")
    assert error_info(rpc_error(lambda: recv(stub, workflow_id, 2, 0, "b"))).reason == (
        "STEP_NAME_MISMATCH"
    )


def test_recv_for_a_missing_or_finished_workflow_is_refused(stub: Stub, database_url: str) -> None:
    missing = new_id("missing")
    send(stub, missing, "kept")
    error = rpc_error(lambda: recv(stub, missing, 1, 0))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    finished = start(stub)
    finish(stub, finished)
    send(stub, finished, "never read")
    error = rpc_error(lambda: recv(stub, finished, 1, 0))
    assert error_info(error).reason == "WORKFLOW_NOT_PENDING"
    assert message_rows(database_url, missing) == [("", '"kept"', None)]
    assert message_rows(database_url, finished) == [("", '"never read"', None)]


def test_a_send_from_a_workflow_is_checkpointed_and_delivered_once(
    stub: Stub, database_url: str
) -> None:
    sender, receiver = start(stub), new_id("receiver")
    caller = pb.StepRef(workflow_id=sender, step_id=1)
    first = send(stub, receiver, "hi", "greetings", caller=caller)
    assert not first.already_sent
    assert (first.step.step_id, first.step.kind, first.step.name) == (
        1,
        pb.STEP_KIND_SEND,
        "greetings",
    )
    # A replay of that step (even with another value) delivers nothing.
    replay = send(stub, receiver, "hi again", "greetings", caller=caller)
    assert replay.already_sent and replay.step == first.step
    assert message_rows(database_url, receiver) == [("greetings", '"hi"', None)]

    # The same send at another step is another message.
    assert not send(
        stub, receiver, "hi", "greetings", caller=pb.StepRef(workflow_id=sender, step_id=2)
    ).already_sent
    assert len(message_rows(database_url, receiver)) == 2

    # Replayed as another operation: refused, nothing delivered.
    error = rpc_error(lambda: send(stub, receiver, "x", "other topic", caller=caller))
    assert error_info(error).reason == "STEP_NAME_MISMATCH"
    finish(stub, sender)
    error = rpc_error(
        lambda: send(stub, receiver, "x", caller=pb.StepRef(workflow_id=sender, step_id=3))
    )
    assert error_info(error).reason == "WORKFLOW_NOT_PENDING"
    error = rpc_error(
        lambda: send(stub, receiver, "x", caller=pb.StepRef(workflow_id=new_id(), step_id=1))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(message_rows(database_url, receiver)) == 2


def test_a_checkpointed_send_with_a_used_key_records_its_step_and_delivers_nothing(
    stub: Stub, database_url: str
) -> None:
    sender, receiver = start(stub), new_id("receiver")
    send(stub, receiver, "by hand", key="shared")
    reply = send(
        stub,
        receiver,
        "from the workflow",
        key="shared",
        caller=pb.StepRef(workflow_id=sender, step_id=1),
    )
    assert reply.already_sent and reply.step.kind == pb.STEP_KIND_SEND
    assert message_rows(database_url, receiver) == [("", '"by hand"', None)]


def test_send_and_recv_reject_bad_input(stub: Stub) -> None:
    workflow_id = start(stub)

    def invalid(call: Any, field: str) -> None:
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error_info(error).metadata["field"] == field

    def raw_send(**fields: Any) -> Any:
        request = pb.SendRequest(
            destination_workflow_id=workflow_id, **{"message": payload(1), **fields}
        )
        return lambda: stub.Send(request, timeout=RPC_TIMEOUT)

    invalid(
        lambda: stub.Send(pb.SendRequest(destination_workflow_id=workflow_id), timeout=RPC_TIMEOUT),
        "message",
    )
    invalid(
        lambda: stub.Send(pb.SendRequest(message=payload(1)), timeout=RPC_TIMEOUT),
        "destination_workflow_id",
    )
    invalid(raw_send(topic="x" * 257), "topic")
    invalid(raw_send(topic="a\nb"), "topic")
    invalid(raw_send(idempotency_key="k" * 257), "idempotency_key")
    invalid(raw_send(message=pb.Payload(encoding="json", data=b"{nope")), "message.data")
    invalid(raw_send(caller=pb.StepRef(workflow_id=workflow_id)), "caller.step_id")
    invalid(raw_send(caller=pb.StepRef(step_id=1)), "caller.workflow_id")

    invalid(lambda: recv(stub, workflow_id, 1, -1), "timeout")
    invalid(lambda: recv(stub, workflow_id, 0, 1), "step_id")
    invalid(lambda: recv(stub, workflow_id, 1, 1, "t" * 257), "topic")
    invalid(lambda: recv(stub, workflow_id, 1, 10 * 24 * 3600.0), "timeout")
    invalid(lambda: recv(stub, "bad id!", 1, 1), "workflow_id")


# --- the SDK -------------------------------------------------------------------------------


class Crash(BaseException):
    """Stops a workflow run without recording its end, like a process dying."""


@pytest.fixture
def crash_once() -> Iterator[set[str]]:
    """Workflow IDs whose next run should crash at its crash point."""
    yield set()


def test_sdk_send_before_start_and_recv_in_order(sdk: None) -> None:
    @durable.workflow(name="messages.collect")
    def collect(count: int) -> list[Any]:
        return [durable.recv("orders", timeout=5) for _ in range(count)]

    workflow_id = new_id("collect")
    for n in range(3):
        durable.send(workflow_id, {"n": n}, "orders")
    with durable.set_workflow_id(workflow_id):
        assert collect(3) == [{"n": 0}, {"n": 1}, {"n": 2}]
    steps = durable.list_steps(workflow_id)
    assert [(s.kind, s.name) for s in steps] == [("recv", "orders")] * 3


def test_sdk_recv_timeout_returns_none_and_replays_as_none(sdk: None, crash_once: set[str]) -> None:
    @durable.workflow(name="messages.patient")
    def patient() -> list[Any]:
        first = durable.recv(timeout=0.2)
        if durable.current_workflow_id() in crash_once:
            crash_once.discard(durable.current_workflow_id() or "")
            raise Crash
        return [first, durable.recv(timeout=5)]

    workflow_id = new_id("patient")
    crash_once.add(workflow_id)
    with durable.set_workflow_id(workflow_id), pytest.raises(Crash):
        patient()
    durable.send(workflow_id, "arrived later")
    with durable.set_workflow_id(workflow_id):
        # The replayed recv still timed out; the message goes to the next one.
        assert patient() == [None, "arrived later"]


def test_sdk_send_from_a_replayed_workflow_delivers_once(
    sdk: None, crash_once: set[str], database_url: str
) -> None:
    receiver = new_id("receiver")

    @durable.workflow(name="messages.sender")
    def sender() -> str:
        durable.send(receiver, "ping", "pings")
        if durable.current_workflow_id() in crash_once:
            crash_once.discard(durable.current_workflow_id() or "")
            raise Crash
        return "sent"

    workflow_id = new_id("sender")
    crash_once.add(workflow_id)
    with durable.set_workflow_id(workflow_id), pytest.raises(Crash):
        sender()
    with durable.set_workflow_id(workflow_id):
        assert sender() == "sent"
    assert message_rows(database_url, receiver) == [("pings", '"ping"', None)]
    steps = durable.list_steps(workflow_id)
    assert [(s.kind, s.name) for s in steps] == [("send", "pings")]


def test_sdk_send_outside_a_workflow_is_idempotent_with_a_key(sdk: None, database_url: str) -> None:
    destination = new_id("dest")
    durable.send(destination, 1, idempotency_key="once")
    durable.send(destination, 2, idempotency_key="once")
    durable.send(destination, 3)
    durable.send(destination, 3)  # no key: two sends are two messages
    assert [row[1] for row in message_rows(database_url, destination)] == ["1", "3", "3"]


def test_sdk_recv_only_in_a_workflow_outside_its_steps(sdk: None) -> None:
    with pytest.raises(durable.NotInWorkflowError):
        durable.recv()

    @durable.step
    def inner() -> None:
        durable.recv()

    @durable.workflow(name="messages.misplaced")
    def misplaced() -> None:
        inner()

    with pytest.raises(durable.NotInWorkflowError):
        misplaced()
    with pytest.raises(ValueError):
        durable.recv(timeout=-1)
    with pytest.raises(durable.PayloadError):
        durable.send(new_id(), object())


# --- the CLI -------------------------------------------------------------------------------


def test_cli_sends_a_message_once_per_key(
    coordinator: Coordinator, stub: Stub, database_url: str
) -> None:
    workflow_id = new_id("cli")
    args = ("messages", "send", workflow_id, '{"approved": true}', "--topic", "decision")
    first = run(coordinator, *args, "--idempotency-key", "k1")
    assert first.returncode == 0 and "sent to" in first.stderr, first.stderr
    again = run(coordinator, *args, "--idempotency-key", "k1")
    assert again.returncode == 0 and "not sent again" in again.stderr, again.stderr
    assert message_rows(database_url, workflow_id) == [("decision", '{"approved":true}', None)]
    as_json = json.loads(ok(coordinator, *args, "--idempotency-key", "k1", "--json"))
    assert as_json == {"workflow_id": workflow_id, "sent": False, "idempotency_key": "k1"}

    assert "not JSON" in fails(coordinator, "messages", "send", workflow_id, "{nope")
    assert "topic" in fails(coordinator, "messages", "send", workflow_id, "1", "--topic", "a\nb")
    start(stub, workflow_id)
    assert value_of(recv(stub, workflow_id, 1, 0, "decision").step.output) == {"approved": True}
