"""Events over real gRPC and Postgres: SetEvent versions, GetEvent waits and timeouts, follow
streams, replay safety, cancellation, and wake-ups that cross coordinators via LISTEN/NOTIFY."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.store.events import NOTIFY_VALUE_BYTES
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    WORKFLOW_READ_SQL,
    Activity,
    Coordinator,
    Stub,
    duration,
    error_info,
    eventually,
    finish,
    free_port,
    payload,
    rpc_error,
    running_coordinator,
    scrape_metrics,
    set_event,
    value_of,
)

# Text of the coordinator's event read (coordinator/store/events.py). A reader arms its
# wake-up before this read, so once a session shows the read as finished the reader is
# parked: anything set from then on must wake it.
EVENT_READ_SQL = "FROM (SELECT 1) AS one"


# --- helpers -------------------------------------------------------------------------------


def start_workflow(stub: Stub, workflow_id: str | None = None) -> str:
    workflow_id = workflow_id or f"events-{uuid.uuid4().hex}"
    reply = stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name="events.flow"), timeout=RPC_TIMEOUT
    )
    assert reply.created
    return workflow_id


def event_request(
    workflow_id: str,
    key: str,
    timeout: float | None,
    *,
    follow: bool = False,
    after_version: int = 0,
) -> pb.GetEventRequest:
    request = pb.GetEventRequest(
        workflow_id=workflow_id, key=key, follow=follow, after_version=after_version
    )
    if timeout is not None:
        request.timeout.CopyFrom(duration(timeout))
    return request


def get_event(
    stub: Stub,
    workflow_id: str,
    key: str,
    timeout: float | None,
    *,
    follow: bool = False,
    after_version: int = 0,
) -> list[pb.GetEventResponse]:
    """The whole GetEvent stream."""
    request = event_request(workflow_id, key, timeout, follow=follow, after_version=after_version)
    return list(stub.GetEvent(request, timeout=(timeout or 0) + RPC_TIMEOUT))


def kind(message: pb.GetEventResponse) -> str | None:
    return message.WhichOneof("outcome")


def values(messages: list[pb.GetEventResponse]) -> list[tuple[Any, int]]:
    """(value, version) of the event messages."""
    return [(value_of(m.event.value), m.event.version) for m in messages if kind(m) == "event"]


class Follower:
    """A GetEvent stream consumed on a thread; its messages arrive on a queue."""

    def __init__(self, stub: Stub, request: pb.GetEventRequest, rpc_timeout: float = 30.0):
        self.call = stub.GetEvent(request, timeout=rpc_timeout)
        self._queue: queue.Queue[pb.GetEventResponse | grpc.RpcError | None] = queue.Queue()
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        try:
            for message in self.call:
                self._queue.put(message)
        except grpc.RpcError as exc:
            self._queue.put(exc)
            return
        self._queue.put(None)  # the stream ended normally

    def _take(self, timeout: float) -> pb.GetEventResponse | grpc.RpcError | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stream message within {timeout}s") from None

    def next(self, timeout: float = PROMPT) -> pb.GetEventResponse:
        item = self._take(timeout)
        if not isinstance(item, pb.GetEventResponse):
            raise AssertionError(f"expected a message, got {item!r}")
        return item

    def rest(self, timeout: float = PROMPT) -> list[pb.GetEventResponse]:
        """Every remaining message until the stream ends (which must happen within `timeout`)."""
        deadline = time.monotonic() + timeout
        found = []
        while True:
            item = self._take(max(0.0, deadline - time.monotonic()))
            if item is None:
                break
            if isinstance(item, grpc.RpcError):
                raise item
            found.append(item)
        self._thread.join(timeout=PROMPT)
        return found

    def error(self, timeout: float = PROMPT) -> grpc.RpcError:
        """The error that ends the stream (e.g. after a cancel), skipping messages before it."""
        deadline = time.monotonic() + timeout
        while True:
            item = self._take(max(0.0, deadline - time.monotonic()))
            if isinstance(item, grpc.RpcError):
                return item
            if item is None:
                raise AssertionError("the stream ended without an error")


def history_count(database_url: str, workflow_id: str, key: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM durable.event_history WHERE workflow_id = %s AND key = %s",
            (workflow_id, key),
        ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


# --- SetEvent and GetEvent -----------------------------------------------------------------


def test_set_event_counts_versions_up_and_get_event_returns_the_latest(stub: Stub) -> None:
    workflow_id = start_workflow(stub)

    first = set_event(stub, workflow_id, 1, "status", "created")
    assert not first.already_recorded
    assert first.version == 1
    assert first.step.step_id == 1
    assert first.step.name == "status"
    assert first.step.kind == pb.STEP_KIND_SET_EVENT
    assert first.step.HasField("record_time")
    [reply] = get_event(stub, workflow_id, "status", timeout=0)
    assert values([reply]) == [("created", 1)]
    assert reply.event.set_time.ToDatetime() > datetime(2000, 1, 1)

    second = set_event(stub, workflow_id, 2, "status", {"phase": "paid", "cents": 1250})
    assert (second.already_recorded, second.version) == (False, 2)
    assert values(get_event(stub, workflow_id, "status", timeout=0)) == [
        ({"phase": "paid", "cents": 1250}, 2)
    ]


def test_event_keys_are_versioned_separately(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    assert set_event(stub, workflow_id, 1, "a", 1).version == 1
    assert set_event(stub, workflow_id, 2, "b", 1).version == 1
    assert set_event(stub, workflow_id, 3, "a", 2).version == 2
    assert values(get_event(stub, workflow_id, "a", timeout=0)) == [(2, 2)]
    assert values(get_event(stub, workflow_id, "b", timeout=0)) == [(1, 1)]


def test_opaque_encoding_round_trips_bytes_unchanged(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    raw = bytes(range(256))
    stub.SetEvent(
        pb.SetEventRequest(
            workflow_id=workflow_id,
            step_id=1,
            key="blob",
            value=pb.Payload(encoding="application/octet-stream", data=raw),
        ),
        timeout=RPC_TIMEOUT,
    )
    [reply] = get_event(stub, workflow_id, "blob", timeout=0)
    assert reply.event.value.encoding == "application/octet-stream"
    assert reply.event.value.data == raw


def test_get_event_waits_for_a_value_set_later(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    since = activity.now()
    reader = pool.submit(get_event, stub, workflow_id, "url", RPC_TIMEOUT)
    activity.wait_parked(since, EVENT_READ_SQL)
    assert not reader.done()

    started = time.monotonic()
    set_event(stub, workflow_id, 1, "url", "https://pay.example/1")
    messages = reader.result(timeout=PROMPT)
    assert values(messages) == [("https://pay.example/1", 1)]
    assert len(messages) == 1
    assert time.monotonic() - started < PROMPT


def test_get_event_times_out_with_exactly_one_timed_out_message(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    timeout = 0.5
    started = time.monotonic()
    messages = get_event(stub, workflow_id, "never", timeout=timeout)
    elapsed = time.monotonic() - started
    assert [kind(m) for m in messages] == ["timed_out"]
    assert elapsed >= timeout
    assert elapsed < timeout + 3.0


def test_get_event_with_sub_second_nanos_timeout_waits_that_long(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    request = pb.GetEventRequest(
        workflow_id=workflow_id, key="never", timeout=Duration(seconds=0, nanos=300_000_000)
    )
    started = time.monotonic()
    messages = list(stub.GetEvent(request, timeout=RPC_TIMEOUT))
    elapsed = time.monotonic() - started
    assert [kind(m) for m in messages] == ["timed_out"]
    assert 0.3 <= elapsed < 3.3


def test_get_event_with_zero_timeout_looks_once(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    started = time.monotonic()
    assert [kind(m) for m in get_event(stub, workflow_id, "k", timeout=0)] == ["timed_out"]
    assert time.monotonic() - started < 2.0

    set_event(stub, workflow_id, 1, "k", "v")
    assert values(get_event(stub, workflow_id, "k", timeout=0)) == [("v", 1)]


def test_get_event_without_timeout_returns_a_value_already_set(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", [1, 2, 3])
    messages = get_event(stub, workflow_id, "k", timeout=None)
    assert values(messages) == [([1, 2, 3], 1)]
    assert len(messages) == 1


def test_get_event_without_timeout_waits_instead_of_looking_once(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    since = activity.now()
    reader = pool.submit(get_event, stub, workflow_id, "k", None)
    activity.wait_parked(since, EVENT_READ_SQL)
    set_event(stub, workflow_id, 1, "k", "late")
    assert values(reader.result(timeout=PROMPT)) == [("late", 1)]


def test_get_event_after_version_skips_values_already_seen(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "one")
    assert [kind(m) for m in get_event(stub, workflow_id, "k", 0, after_version=1)] == ["timed_out"]
    set_event(stub, workflow_id, 2, "k", "two")
    assert values(get_event(stub, workflow_id, "k", 0, after_version=1)) == [("two", 2)]


def test_get_event_for_an_unknown_workflow_times_out_without_error(stub: Stub) -> None:
    messages = get_event(stub, f"never-started-{uuid.uuid4().hex}", "k", timeout=0.3)
    assert [kind(m) for m in messages] == ["timed_out"]


def test_get_event_for_a_workflow_that_starts_later_gets_its_value(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = f"later-{uuid.uuid4().hex}"
    since = activity.now()
    reader = pool.submit(get_event, stub, workflow_id, "k", RPC_TIMEOUT)
    activity.wait_parked(since, EVENT_READ_SQL)

    start_workflow(stub, workflow_id)
    set_event(stub, workflow_id, 1, "k", "hello")
    assert values(reader.result(timeout=PROMPT)) == [("hello", 1)]


# --- follow --------------------------------------------------------------------------------


def test_follower_sees_every_value_in_order_then_workflow_finished(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "progress", 0)
    follower = Follower(stub, event_request(workflow_id, "progress", 20, follow=True))
    assert values([follower.next()]) == [(0, 1)]

    set_event(stub, workflow_id, 2, "progress", 50)
    set_event(stub, workflow_id, 3, "progress", 100)
    finish(stub, workflow_id)

    rest = follower.rest()
    assert values(rest) == [(50, 2), (100, 3)]
    assert [kind(m) for m in rest] == ["event", "event", "workflow_finished"]
    assert rest[-1].workflow_finished.status == pb.WORKFLOW_STATUS_SUCCESS


def test_follower_of_a_failed_workflow_ends_with_error_status(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    follower = Follower(stub, event_request(workflow_id, "k", 20, follow=True))
    set_event(stub, workflow_id, 1, "k", "v")
    assert values([follower.next()]) == [("v", 1)]
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(
            workflow_id=workflow_id, error=pb.Failure(type="builtins.ValueError", message="no")
        ),
        timeout=RPC_TIMEOUT,
    )
    [last] = follower.rest()
    assert kind(last) == "workflow_finished"
    assert last.workflow_finished.status == pb.WORKFLOW_STATUS_ERROR


def test_follow_without_after_version_starts_from_the_latest_value(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    for step in (1, 2, 3):
        set_event(stub, workflow_id, step, "k", step * 10)
    messages = get_event(stub, workflow_id, "k", timeout=0, follow=True)
    assert values(messages) == [(30, 3)]
    assert kind(messages[-1]) == "timed_out"


def test_follow_from_first_value_streams_the_whole_history_then_live_values(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    count = 130  # more than one page of history
    for step in range(1, count + 1):
        set_event(stub, workflow_id, step, "progress", step)
    request = event_request(workflow_id, "progress", 20, follow=True)
    request.from_first_value = True
    follower = Follower(stub, request)
    assert values([follower.next() for _ in range(count)]) == [(n, n) for n in range(1, count + 1)]
    set_event(stub, workflow_id, count + 1, "progress", "live")
    assert values([follower.next()]) == [("live", count + 1)]
    finish(stub, workflow_id)
    assert [kind(m) for m in follower.rest()] == ["workflow_finished"]


def test_follow_from_first_value_waits_for_a_first_value_not_yet_set(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    request = event_request(workflow_id, "k", 20, follow=True)
    request.from_first_value = True
    follower = Follower(stub, request)
    set_event(stub, workflow_id, 1, "k", "a")
    set_event(stub, workflow_id, 2, "k", "b")
    assert values([follower.next(), follower.next()]) == [("a", 1), ("b", 2)]
    finish(stub, workflow_id)
    assert [kind(m) for m in follower.rest()] == ["workflow_finished"]


def test_follow_times_out_with_timed_out_after_the_values(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "v")
    started = time.monotonic()
    messages = get_event(stub, workflow_id, "k", timeout=0.4, follow=True)
    elapsed = time.monotonic() - started
    assert [kind(m) for m in messages] == ["event", "timed_out"]
    assert 0.4 <= elapsed < 3.4


def test_follow_with_after_version_resumes_from_history_without_missing_values(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    count = 130  # more than one page of history (the store reads 100 at a time)
    for step in range(1, count + 1):
        set_event(stub, workflow_id, step, "tick", step)

    messages = get_event(stub, workflow_id, "tick", timeout=0, follow=True, after_version=3)
    assert values(messages) == [(n, n) for n in range(4, count + 1)]
    assert kind(messages[-1]) == "timed_out"

    # Resuming live: the watcher saw up to `count`, went away, and comes back after more.
    set_event(stub, workflow_id, count + 1, "tick", "a")
    set_event(stub, workflow_id, count + 2, "tick", "b")
    follower = Follower(
        stub, event_request(workflow_id, "tick", 20, follow=True, after_version=count)
    )
    assert values([follower.next(), follower.next()]) == [("a", count + 1), ("b", count + 2)]
    set_event(stub, workflow_id, count + 3, "tick", "c")
    assert values([follower.next()]) == [("c", count + 3)]
    finish(stub, workflow_id)
    assert [kind(m) for m in follower.rest()] == ["workflow_finished"]


def test_follow_on_a_finished_workflow_sends_the_latest_value_then_workflow_finished(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "first")
    set_event(stub, workflow_id, 2, "k", "last")
    finish(stub, workflow_id)

    started = time.monotonic()
    messages = get_event(stub, workflow_id, "k", timeout=RPC_TIMEOUT, follow=True)
    assert time.monotonic() - started < PROMPT
    assert values(messages) == [("last", 2)]
    assert [kind(m) for m in messages] == ["event", "workflow_finished"]
    assert messages[-1].workflow_finished.status == pb.WORKFLOW_STATUS_SUCCESS

    # A resuming follower of a finished workflow gets the rest of the history.
    resumed = get_event(stub, workflow_id, "k", RPC_TIMEOUT, follow=True, after_version=1)
    assert values(resumed) == [("last", 2)]
    assert kind(resumed[-1]) == "workflow_finished"
    resumed = get_event(stub, workflow_id, "k", RPC_TIMEOUT, follow=True, after_version=2)
    assert [kind(m) for m in resumed] == ["workflow_finished"]


def test_get_event_on_a_finished_workflow_without_the_key_reports_workflow_finished_at_once(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    finish(stub, workflow_id)
    for follow in (False, True):
        started = time.monotonic()
        messages = get_event(stub, workflow_id, "missing", timeout=RPC_TIMEOUT, follow=follow)
        assert time.monotonic() - started < PROMPT
        assert [kind(m) for m in messages] == ["workflow_finished"]
        assert messages[0].workflow_finished.status == pb.WORKFLOW_STATUS_SUCCESS


def test_get_event_on_a_finished_workflow_with_the_key_returns_only_the_value(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "kept")
    finish(stub, workflow_id)
    assert [kind(m) for m in get_event(stub, workflow_id, "k", timeout=RPC_TIMEOUT)] == ["event"]


# --- replay and preconditions --------------------------------------------------------------


def test_replayed_set_event_does_not_move_progress_backwards(stub: Stub, database_url: str) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "progress", 0)
    set_event(stub, workflow_id, 2, "progress", 50)
    set_event(stub, workflow_id, 3, "progress", 100)

    for replayed_value in (50, 75):  # the same value, or a different one: nothing is set
        replay = set_event(stub, workflow_id, 2, "progress", replayed_value)
        assert replay.already_recorded
        assert replay.version == 0
        assert replay.step.step_id == 2
        assert replay.step.name == "progress"
        assert replay.step.kind == pb.STEP_KIND_SET_EVENT
        assert values(get_event(stub, workflow_id, "progress", timeout=0)) == [(100, 3)]
    assert history_count(database_url, workflow_id, "progress") == 3


def test_set_event_with_another_key_at_a_recorded_position_fails_with_step_name_mismatch(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "paymentURL", "u")
    err = rpc_error(lambda: set_event(stub, workflow_id, 1, "receiptURL", "u"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "STEP_NAME_MISMATCH"
    assert info.metadata["step_id"] == "1"
    assert "paymentURL" in (err.details() or "")
    assert "receiptURL" in (err.details() or "")
    # Nothing was set under the other key.
    assert [kind(m) for m in get_event(stub, workflow_id, "receiptURL", 0)] == ["timed_out"]


def test_set_event_at_a_position_recorded_by_run_step_fails_with_step_name_mismatch(
    stub: Stub,
) -> None:
    workflow_id = start_workflow(stub)
    stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=1, name="k", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    err = rpc_error(lambda: set_event(stub, workflow_id, 1, "k", 1))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "STEP_NAME_MISMATCH"


def test_set_event_on_a_finished_workflow_fails_with_workflow_not_pending(stub: Stub) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "before")
    finish(stub, workflow_id)

    err = rpc_error(lambda: set_event(stub, workflow_id, 2, "k", "after"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "WORKFLOW_NOT_PENDING"
    assert info.metadata["status"] == "SUCCESS"
    assert values(get_event(stub, workflow_id, "k", timeout=0)) == [("before", 1)]

    # Replaying the recorded step still works after the finish.
    replay = set_event(stub, workflow_id, 1, "k", "before")
    assert replay.already_recorded


def test_set_event_on_an_unknown_workflow_fails_with_not_found(stub: Stub) -> None:
    workflow_id = f"unknown-{uuid.uuid4().hex}"
    err = rpc_error(lambda: set_event(stub, workflow_id, 1, "k", 1))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(err)
    assert info.reason == "WORKFLOW_NOT_FOUND"
    assert info.metadata["workflow_id"] == workflow_id


def test_racing_set_events_on_one_step_set_the_value_once(
    stub: Stub, database_url: str, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    racers = 16
    barrier = threading.Barrier(racers)

    def race(n: int) -> pb.SetEventResponse:
        barrier.wait(timeout=RPC_TIMEOUT)
        return set_event(stub, workflow_id, 1, "k", n)

    replies = [f.result(timeout=RPC_TIMEOUT) for f in [pool.submit(race, n) for n in range(racers)]]
    winners = [r for r in replies if not r.already_recorded]
    assert len(winners) == 1
    assert winners[0].version == 1
    assert all(r.version == 0 for r in replies if r.already_recorded)
    assert history_count(database_url, workflow_id, "k") == 1
    [reply] = get_event(stub, workflow_id, "k", timeout=0)
    assert reply.event.version == 1
    assert value_of(reply.event.value) in range(racers)


def test_racing_set_events_on_different_steps_get_distinct_versions(
    stub: Stub, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    racers = 16
    barrier = threading.Barrier(racers)

    def race(step: int) -> pb.SetEventResponse:
        barrier.wait(timeout=RPC_TIMEOUT)
        return set_event(stub, workflow_id, step, "k", step)

    replies = [
        f.result(timeout=RPC_TIMEOUT) for f in [pool.submit(race, s) for s in range(1, racers + 1)]
    ]
    assert sorted(r.version for r in replies) == list(range(1, racers + 1))
    # Each value was set by the step that sent it; history holds them in version order.
    step_by_version = {r.version: r.step.step_id for r in replies}
    assert values(get_event(stub, workflow_id, "k", timeout=0)) == [
        (step_by_version[racers], racers)
    ]
    history = get_event(stub, workflow_id, "k", 0, follow=True, after_version=1)
    assert values(history) == [(step_by_version[v], v) for v in range(2, racers + 1)]


def test_set_event_racing_finish_is_either_refused_or_seen_by_followers(
    stub: Stub, database_url: str, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    """A value may not be set after the workflow finished: a follower that got
    `workflow_finished` must have been sent every value the workflow set."""
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "k", "one")
    follower = Follower(stub, event_request(workflow_id, "k", 20, follow=True))
    assert values([follower.next()]) == [("one", 1)]

    with psycopg.connect(database_url) as blocker:
        # Hold the event's row so the next SetEvent stops mid-statement.
        blocker.execute(
            "SELECT 1 FROM durable.events WHERE workflow_id = %s AND key = 'k' FOR UPDATE",
            (workflow_id,),
        )
        setter: Future[pb.SetEventResponse] = pool.submit(
            set_event, stub, workflow_id, 2, "k", "two"
        )
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)
        finisher = pool.submit(finish, stub, workflow_id)
        # Either the finish waits for the SetEvent in flight, or it completes now.
        eventually(lambda: finisher.done() or activity.lock_waiters() >= 2, timeout=PROMPT)
        finished_first = finisher.done()
        blocker.rollback()

    assert finisher.result(timeout=PROMPT).workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    rest = follower.rest()
    set_error = setter.exception(timeout=PROMPT)
    if set_error is None:
        assert not finished_first, "a value was set after FinishWorkflow had returned"
        assert values(rest) == [("two", 2)], "the follower missed a value the workflow set"
    else:
        assert isinstance(set_error, grpc.RpcError)
        assert error_info(set_error).reason == "WORKFLOW_NOT_PENDING"
        assert values(rest) == []
    assert kind(rest[-1]) == "workflow_finished"
    # Whatever the outcome, the latest value matches what the follower saw last.
    latest = values(get_event(stub, workflow_id, "k", timeout=0))
    assert latest == ([("two", 2)] if set_error is None else [("one", 1)])


# --- cancellation --------------------------------------------------------------------------


def test_cancelling_get_event_streams_leaves_the_server_serving(
    stub: Stub, coordinator: Coordinator, activity: Activity
) -> None:
    workflow_id = start_workflow(stub)

    # A reader cancelled while it waits for a value that never comes.
    since = activity.now()
    waiting = Follower(stub, event_request(workflow_id, "k", 30), rpc_timeout=60)
    activity.wait_parked(since, EVENT_READ_SQL)
    waiting.call.cancel()
    assert waiting.error().code() == grpc.StatusCode.CANCELLED

    # A follower cancelled after its first value.
    set_event(stub, workflow_id, 1, "k", 1)
    follower = Follower(stub, event_request(workflow_id, "k", 30, follow=True), rpc_timeout=60)
    assert values([follower.next()]) == [(1, 1)]
    follower.call.cancel()
    assert follower.error().code() == grpc.StatusCode.CANCELLED

    # Many cancelled at once.
    since = activity.now()
    crowd = [
        Follower(stub, event_request(workflow_id, "other", 30, follow=True), rpc_timeout=60)
        for _ in range(20)
    ]
    # Some are parked; the rest may still be reading.
    activity.wait_parked(since, EVENT_READ_SQL)
    for member in crowd:
        member.call.cancel()
    for member in crowd:
        assert member.error().code() == grpc.StatusCode.CANCELLED

    # The server keeps serving readers and writers.
    set_event(stub, workflow_id, 2, "k", 2)
    assert values(get_event(stub, workflow_id, "k", timeout=RPC_TIMEOUT)) == [(2, 2)]
    health = health_pb2_grpc.HealthStub(coordinator.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert coordinator.process.poll() is None
    assert " ERROR coordinator." not in coordinator.log()


# --- across coordinators -------------------------------------------------------------------


def test_reader_on_one_coordinator_gets_a_value_set_through_another(
    stub: Stub, other_coordinator: Coordinator, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    since = activity.now()
    reader = pool.submit(get_event, other_coordinator.stub, workflow_id, "k", RPC_TIMEOUT)
    activity.wait_parked(since, EVENT_READ_SQL)

    started = time.monotonic()
    set_event(stub, workflow_id, 1, "k", "across")
    assert values(reader.result(timeout=PROMPT)) == [("across", 1)]
    assert time.monotonic() - started < PROMPT


def test_follower_on_one_coordinator_sees_values_and_finish_from_another(
    stub: Stub, other_coordinator: Coordinator
) -> None:
    workflow_id = start_workflow(stub)
    set_event(stub, workflow_id, 1, "progress", 0)
    follower = Follower(
        other_coordinator.stub, event_request(workflow_id, "progress", 20, follow=True)
    )
    assert values([follower.next()]) == [(0, 1)]
    set_event(stub, workflow_id, 2, "progress", 50)
    assert values([follower.next()]) == [(50, 2)]
    set_event(stub, workflow_id, 3, "progress", 100)
    finish(stub, workflow_id)
    rest = follower.rest()
    assert values(rest) == [(100, 3)]
    assert kind(rest[-1]) == "workflow_finished"


# The longest event key (256 characters of 4 bytes each): the NOTIFY must still fit.
LONGEST_KEY = "\U0001f600" * 256


@pytest.mark.parametrize("setter", ["same coordinator", "other coordinator"])
def test_a_woken_reader_takes_a_small_value_from_its_wake_up_and_reads_a_large_one(
    database_url: str, stub: Stub, setter: str
) -> None:
    """A SetEvent hands its value to this coordinator's readers, and its NOTIFY carries it
    to other coordinators' when small: they deliver it without reading it back; there,
    values over the NOTIFY limit are read. Either way the reader gets what was stored."""
    metrics_address = f"127.0.0.1:{free_port()}"
    largest = "x" * (NOTIFY_VALUE_BYTES - 2)  # as JSON: NOTIFY_VALUE_BYTES bytes
    sent: list[Any] = [0, 25, 50, largest, largest + "x", 100]
    with running_coordinator(database_url, "--metrics-listen", metrics_address) as reading:
        writer = reading.stub if setter == "same coordinator" else stub
        workflow_id = start_workflow(stub)
        set_event(writer, workflow_id, 1, LONGEST_KEY, sent[0])
        follower = Follower(reading.stub, event_request(workflow_id, LONGEST_KEY, 20, follow=True))
        received = [follower.next()]  # read: it was set before the stream opened
        for version, value in enumerate(sent[1:], start=2):
            set_event(writer, workflow_id, version, LONGEST_KEY, value)
            received.append(follower.next())
        follower.call.cancel()
        delivered = {
            source: scrape_metrics(metrics_address).get(
                ("durable_event_values_delivered_total", frozenset({("source", source)})), 0.0
            )
            for source in ("handed", "read")
        }
    assert values(received) == [(value, version) for version, value in enumerate(sent, 1)]
    # The first value was read, and on another coordinator also the one over the NOTIFY
    # limit; the rest came with their wake-up. On the same coordinator that one is handed
    # over in-process, unless its NOTIFY (which lacks it) wakes the reader first: then read.
    if setter == "same coordinator":
        assert delivered in ({"handed": 5, "read": 1}, {"handed": 4, "read": 2})
    else:
        assert delivered == {"handed": 4, "read": 2}
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT set_at FROM durable.event_history WHERE workflow_id = %s ORDER BY version",
            (workflow_id,),
        ).fetchall()
    # A handed-over value's set time is the stored one, to the microsecond.
    assert [m.event.set_time.ToDatetime(tzinfo=timezone.utc) for m in received] == [
        set_at for (set_at,) in stored
    ]


def test_await_workflow_on_one_coordinator_sees_a_finish_through_another(
    stub: Stub, other_coordinator: Coordinator, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = start_workflow(stub)
    since = activity.now()
    waiter = pool.submit(
        other_coordinator.stub.AwaitWorkflow,
        pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(RPC_TIMEOUT)),
        timeout=RPC_TIMEOUT * 2,
    )
    activity.wait_parked(since, WORKFLOW_READ_SQL)
    finish(stub, workflow_id, "ok")
    reply = waiter.result(timeout=PROMPT)
    assert not reply.timed_out
    assert reply.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(reply.workflow.output) == "ok"


def test_cross_coordinator_wake_ups_survive_a_lost_listen_connection(
    stub: Stub, other_coordinator: Coordinator, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    listeners = eventually(activity.listen_sessions, timeout=PROMPT)
    assert len(listeners) == 2  # one per coordinator
    activity.terminate(listeners)
    eventually(lambda: "LISTEN connection lost" in other_coordinator.log(), timeout=PROMPT)

    # Whether or not the notification arrives while the LISTEN connection is down, the
    # reader must get the value: a reconnect wakes every waiter to read again.
    workflow_id = start_workflow(stub)
    since = activity.now()
    reader = pool.submit(get_event, other_coordinator.stub, workflow_id, "k", RPC_TIMEOUT)
    activity.wait_parked(since, EVENT_READ_SQL)
    set_event(stub, workflow_id, 1, "k", "after reconnect")
    assert values(reader.result(timeout=PROMPT)) == [("after reconnect", 1)]

    def reconnected() -> bool:
        current = activity.listen_sessions()
        return len(current) == 2 and not set(current) & set(listeners)

    eventually(reconnected, timeout=PROMPT)
