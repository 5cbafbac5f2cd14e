"""Delayed starts and debounce (StartWorkflowRequest.delay / start_at / debounce_key /
debounce, `durable.set_start_options`) against real coordinators and Postgres.

A delayed workflow is stored at once (ENQUEUED, with its due time), claimed by no worker
before it is due, and claimed promptly after: a poller bounds its long-poll by the next
due time it read, so no NOTIFY is needed then. Lateness (due -> claimed) is measured by
the database's clock: a claim sets the workflow's update_time, and due_time is its due
time; the figures are printed (`pytest -s`). A debounced burst runs once, with the newest
input, once the burst has been quiet for the debounce. The kill -9 of a coordinator around
a due time is tests/reliability/test_delayed_exactly_once.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import durable
import durable.aio
from durable.cli.formatting import show_lines, workflow_json
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    duration,
    new_id,
    payload,
    value_of,
)

# The coordinator's sweep (config.sweep_seconds, 1 s) also ends every idle long-poll each
# second: without the due wake-up, lateness would spread over 0-1 s. The bound on lateness
# asserted here (the measured figures are far lower; see the prints):
MAX_LATENESS = 0.5


def tag() -> str:
    return uuid.uuid4().hex[:10]


def start(stub: Stub, name: str, value: Any = None, **fields: Any) -> pb.StartWorkflowResponse:
    fields.setdefault("workflow_id", new_id("delayed"))
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(name=name, input=payload(value), **fields), timeout=RPC_TIMEOUT
    )


def heartbeat(stub: Stub, names: list[str], queues: tuple[str, ...] | list[str] = ()) -> str:
    executor = new_id("exec")
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor, workflow_names=names, queues=list(queues), lease=duration(60)
        ),
        timeout=RPC_TIMEOUT,
    )
    return executor


def poll(stub: Stub, executor: str, wait: float, n: int = 1) -> list[pb.Workflow]:
    reply = stub.PollWork(
        pb.PollWorkRequest(executor_id=executor, max_workflows=n, timeout=duration(wait)),
        timeout=wait + RPC_TIMEOUT,
    )
    return list(reply.workflows)


def at(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=timezone.utc)


def lateness(claimed: pb.Workflow) -> float:
    """Seconds from the workflow's due time to its claim (both by the database's clock)."""
    return (at(claimed.update_time) - at(claimed.due_time)).total_seconds()


def summary(label: str, figures: list[float]) -> str:
    ms = sorted(1000 * f for f in figures)
    line = (
        f"{label}: n={len(ms)} min={ms[0]:.1f}ms median={statistics.median(ms):.1f}ms"
        f" p90={ms[int(0.9 * (len(ms) - 1))]:.1f}ms max={ms[-1]:.1f}ms"
    )
    print("\n" + line)
    return line


def rows_of(database_url: str, name: str) -> list[tuple[str, str, Any]]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT workflow_id, status, input_data FROM durable.workflows WHERE name = %s",
            (name,),
        ).fetchall()
    return [(str(w), str(s), d) for w, s, d in found]


# --- stored at once, claimed when due -----------------------------------------------------


def test_a_delayed_start_is_stored_at_once_listable_and_idempotent_by_id(stub: Stub) -> None:
    name = f"delayed.{tag()}"
    before = datetime.now(timezone.utc)
    first = start(stub, name, {"n": 1}, delay=duration(30), timeout=duration(5))
    workflow = first.workflow
    assert first.created and workflow.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert not workflow.executor_id and not workflow.queue_name
    due = at(workflow.due_time)
    assert before + timedelta(seconds=29) < due < before + timedelta(seconds=32)
    # Its timeout counts from when it is due, not from the start.
    assert at(workflow.deadline) - due == timedelta(seconds=5)

    again = start(stub, name, {"n": 2}, workflow_id=workflow.workflow_id, delay=duration(60))
    assert not again.created and again.workflow.due_time == workflow.due_time
    assert value_of(again.workflow.input) == {"n": 1}  # an existing one keeps its start

    listed = stub.ListWorkflows(pb.ListWorkflowsRequest(name=name), timeout=RPC_TIMEOUT)
    assert [w.workflow_id for w in listed.workflows] == [workflow.workflow_id]
    assert listed.workflows[0].due_time == workflow.due_time
    got = stub.GetWorkflow(
        pb.GetWorkflowRequest(workflow_id=workflow.workflow_id), timeout=RPC_TIMEOUT
    )
    assert got.workflow.due_time == workflow.due_time

    # A worker starting the same ID (no delay) does not take it over before it is due.
    executor = heartbeat(stub, [name])
    taken = start(stub, name, {"n": 3}, workflow_id=workflow.workflow_id, executor_id=executor)
    assert not taken.created
    assert taken.workflow.status == pb.WORKFLOW_STATUS_ENQUEUED and not taken.workflow.executor_id
    assert poll(stub, executor, 0.0) == []


def test_a_delayed_workflow_is_not_claimed_before_due_and_promptly_after(
    coordinator: Coordinator, other_coordinator: Coordinator
) -> None:
    name = f"delayed.{tag()}"
    # The poller is on the other coordinator: it learns of the starts by NOTIFY, and of
    # the due times by reading them.
    poller_stub = other_coordinator.stub
    executor = heartbeat(poller_stub, [name])
    replies = [
        start(coordinator.stub, name, i, delay=duration(1.0 + 0.1 * i)).workflow for i in range(12)
    ]
    started = {w.workflow_id for w in replies}
    # A bounded window, ending before the first is due (with a margin for the poll to
    # arrive), by the database's clock: nothing is claimed.
    first_due = min(at(w.due_time) for w in replies)
    window = (first_due - max(at(w.create_time) for w in replies)).total_seconds() - 0.3
    assert window > 0.2
    assert poll(poller_stub, executor, window) == []

    claimed: list[pb.Workflow] = []
    deadline = time.monotonic() + 20
    while len(claimed) < len(started) and time.monotonic() < deadline:
        claimed += poll(poller_stub, executor, 5.0)
    assert {w.workflow_id for w in claimed} == started
    late = [lateness(w) for w in claimed]
    summary("delayed start lateness (due -> claimed, other coordinator)", late)
    assert min(late) >= 0, "claimed before due"
    assert max(late) < MAX_LATENESS


def test_a_poller_already_waiting_is_woken_by_a_shorter_delay(stub: Stub) -> None:
    """A long-poll sleeping until a later due time is woken by a start due sooner."""
    name = f"delayed.{tag()}"
    executor = heartbeat(stub, [name])
    start(stub, name, "late", delay=duration(30))
    with ThreadPoolExecutor(1) as pool:
        polled = pool.submit(poll, stub, executor, 10.0)
        time.sleep(0.3)  # the poll is parked, bounded by the 30 s due time (and the sweep)
        soon = start(stub, name, "soon", delay=duration(0.5)).workflow
        claimed = polled.result(timeout=15)
    assert [w.workflow_id for w in claimed] == [soon.workflow_id]
    assert 0 <= lateness(claimed[0]) < MAX_LATENESS


def test_a_delayed_enqueue_waits_on_its_queue_until_due(stub: Stub) -> None:
    queue, name = f"q-{tag()}", f"queued.{tag()}"
    executor = heartbeat(stub, [name], [queue])
    claimed: list[pb.Workflow] = []
    replies = [
        start(stub, name, i, queue_name=queue, delay=duration(1.0 + 0.2 * i)).workflow
        for i in range(5)
    ]
    ids = {w.workflow_id for w in replies}
    first_due = min(at(w.due_time) for w in replies)
    window = (first_due - max(at(w.create_time) for w in replies)).total_seconds() - 0.3
    assert window > 0.2
    assert poll(stub, executor, window) == []
    deadline = time.monotonic() + 20
    while len(claimed) < len(ids) and time.monotonic() < deadline:
        claimed += poll(stub, executor, 5.0)
    assert {w.workflow_id for w in claimed} == ids
    assert all(w.queue_name == queue for w in claimed)
    late = [lateness(w) for w in claimed]
    summary("delayed enqueue lateness (due -> claimed)", late)
    assert min(late) >= 0 and max(late) < MAX_LATENESS


def test_start_at_in_the_past_means_now_and_in_the_future_waits(stub: Stub) -> None:
    name = f"at.{tag()}"
    executor = heartbeat(stub, [name])
    now = datetime.now(timezone.utc)
    past = Timestamp()
    past.FromDatetime(now - timedelta(hours=1))
    stale = start(stub, name, "past", start_at=past).workflow
    assert stale.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert at(stale.due_time) >= now - timedelta(seconds=1)  # now, not an hour ago
    assert [w.workflow_id for w in poll(stub, executor, 5.0)] == [stale.workflow_id]

    future = Timestamp()
    future.FromDatetime(now + timedelta(seconds=2))
    later = start(stub, name, "future", start_at=future).workflow
    assert later.due_time == future
    assert poll(stub, executor, 0.5) == []
    claimed = poll(stub, executor, 5.0)
    assert [w.workflow_id for w in claimed] == [later.workflow_id]
    assert 0 <= lateness(claimed[0]) < MAX_LATENESS


def test_a_delayed_workflow_is_not_cancelled_by_its_timeout_while_it_waits(stub: Stub) -> None:
    name = f"delayed.{tag()}"
    executor = heartbeat(stub, [name])
    workflow = start(stub, name, delay=duration(1.5), timeout=duration(1)).workflow
    claimed: list[pb.Workflow] = []
    deadline = time.monotonic() + 10
    while not claimed and time.monotonic() < deadline:
        claimed = poll(stub, executor, 5.0)
    assert [w.workflow_id for w in claimed] == [workflow.workflow_id]
    assert claimed[0].status == pb.WORKFLOW_STATUS_PENDING


# --- debounce -------------------------------------------------------------------------------


def test_a_debounced_burst_of_100_concurrent_starts_runs_once_with_the_last_input(
    stub: Stub, database_url: str, pool: ThreadPoolExecutor
) -> None:
    name, key = f"debounced.{tag()}", f"user-{tag()}"
    quiet = 1.0
    executor = heartbeat(stub, [name])
    claims: list[pb.Workflow] = []
    stop = threading.Event()

    def worker() -> None:  # polls throughout the burst: nothing is claimed mid-burst
        while not stop.is_set() and not claims:
            claims.extend(poll(stub, executor, 0.5))

    polling = threading.Thread(target=worker)
    polling.start()
    try:
        replies = list(
            pool.map(
                lambda i: start(stub, name, {"i": i}, debounce_key=key, debounce=duration(quiet)),
                range(100),
            )
        )
        last = start(stub, name, {"i": "last"}, debounce_key=key, debounce=duration(quiet))
        last_sent = datetime.now(timezone.utc)
        assert not claims
        polling.join(timeout=quiet + 10)
    finally:
        stop.set()
        polling.join()

    ids = Counter(r.workflow.workflow_id for r in [*replies, last])
    assert len(ids) == 1, ids  # every start returned the one waiting workflow
    (workflow_id,) = ids
    assert sum(r.created for r in replies) == 1 and not last.created
    assert [w.workflow_id for w in claims] == [workflow_id]
    claimed = claims[0]
    assert value_of(claimed.input) == {"i": "last"}
    assert claimed.debounce_key == key
    # Claimed once the burst was quiet for the debounce, promptly after.
    assert at(claimed.due_time) == at(last.workflow.due_time)
    assert at(claimed.update_time) >= last_sent + timedelta(seconds=quiet - 0.05)
    summary("debounce lateness (due -> claimed)", [lateness(claimed)])
    assert 0 <= lateness(claimed) < MAX_LATENESS
    assert [(w, s) for w, s, _ in rows_of(database_url, name)] == [(workflow_id, "PENDING")]


def test_a_burst_after_the_workflow_was_claimed_starts_a_new_workflow(stub: Stub) -> None:
    name, key = f"debounced.{tag()}", f"k-{tag()}"
    executor = heartbeat(stub, [name])
    first = start(stub, name, 1, debounce_key=key, debounce=duration(0.2)).workflow
    # The same start again (a retry): idempotent by its ID.
    retried = start(
        stub, name, 1, workflow_id=first.workflow_id, debounce_key=key, debounce=duration(0.2)
    )
    assert not retried.created and retried.workflow.workflow_id == first.workflow_id
    claimed = poll(stub, executor, 5.0)
    assert [w.workflow_id for w in claimed] == [first.workflow_id]  # now PENDING: running

    second = start(stub, name, 2, debounce_key=key, debounce=duration(0.2))
    assert second.created and second.workflow.workflow_id != first.workflow_id
    merged = start(stub, name, 3, debounce_key=key, debounce=duration(0.2))
    assert merged.workflow.workflow_id == second.workflow.workflow_id
    claimed = poll(stub, executor, 5.0)
    assert [(w.workflow_id, value_of(w.input)) for w in claimed] == [
        (second.workflow.workflow_id, 3)
    ]
    # Another key, or another workflow name with this key, is another debounce.
    other = start(stub, name, 4, debounce_key=key + "-b", debounce=duration(10))
    assert other.created
    assert start(stub, name + ".x", 5, debounce_key=key, debounce=duration(10)).created


def test_a_debounce_moved_earlier_wakes_a_waiting_poller(stub: Stub) -> None:
    name, key = f"debounced.{tag()}", f"k-{tag()}"
    executor = heartbeat(stub, [name])
    start(stub, name, "slow", debounce_key=key, debounce=duration(30))
    with ThreadPoolExecutor(1) as pool:
        polled = pool.submit(poll, stub, executor, 10.0)
        time.sleep(0.3)
        quick = start(stub, name, "quick", debounce_key=key, debounce=duration(0.3))
        claimed = polled.result(timeout=15)
    assert [(w.workflow_id, value_of(w.input)) for w in claimed] == [
        (quick.workflow.workflow_id, "quick")
    ]
    assert 0 <= lateness(claimed[0]) < MAX_LATENESS


def test_a_resumed_debounced_workflow_leaves_its_burst(stub: Stub) -> None:
    name, key = f"debounced.{tag()}", f"k-{tag()}"
    executor = heartbeat(stub, [name])
    first = start(stub, name, 1, debounce_key=key, debounce=duration(0.5)).workflow
    stub.CancelWorkflow(
        pb.CancelWorkflowRequest(workflow_id=first.workflow_id), timeout=RPC_TIMEOUT
    )
    second = start(stub, name, 2, debounce_key=key, debounce=duration(60))
    assert second.created  # the cancelled one no longer waits: a new burst
    resumed = stub.ResumeWorkflow(
        pb.ResumeWorkflowRequest(workflow_id=first.workflow_id), timeout=RPC_TIMEOUT
    ).workflow
    assert resumed.status == pb.WORKFLOW_STATUS_ENQUEUED and not resumed.debounce_key
    # Due when it was (it keeps its due time), outside the burst, which goes on waiting.
    claimed = poll(stub, executor, 5.0)
    assert [w.workflow_id for w in claimed] == [first.workflow_id]
    assert claimed[0].due_time == first.due_time
    third = start(stub, name, 3, debounce_key=key, debounce=duration(60)).workflow
    assert third.workflow_id == second.workflow.workflow_id


def test_debounce_on_a_queue_and_a_delay_with_a_deduplication_id(stub: Stub) -> None:
    queue, name, key = f"q-{tag()}", f"debounced.{tag()}", f"k-{tag()}"
    executor = heartbeat(stub, [name], [queue])
    a = start(stub, name, "a", queue_name=queue, debounce_key=key, debounce=duration(0.3))
    b = start(stub, name, "b", queue_name=queue, debounce_key=key, debounce=duration(0.3))
    assert b.workflow.workflow_id == a.workflow.workflow_id and b.workflow.queue_name == queue
    claimed = poll(stub, executor, 5.0)
    assert [(w.workflow_id, value_of(w.input)) for w in claimed] == [(a.workflow.workflow_id, "b")]

    # A delayed enqueue holds its deduplication ID while it waits.
    held = start(stub, name, 1, queue_name=queue, deduplication_id=key, delay=duration(30))
    with pytest.raises(Exception) as refused:
        start(stub, name, 2, queue_name=queue, deduplication_id=key)
    assert "ALREADY_EXISTS" in str(refused.value) and held.created


# --- the SDK, both faces ------------------------------------------------------------------

ran: list[tuple[str, Any]] = []


@durable.workflow(name="tests.delayed.record")
def record(value: Any) -> Any:
    ran.append((durable.current_workflow_id() or "", value))
    return value


@durable.workflow(name="tests.delayed.parent")
def parent(delay: float) -> str:
    with durable.set_start_options(delay=delay):
        child = durable.start_workflow(record, "from-parent")
    return child.workflow_id


@durable.workflow(name="tests.delayed.arecord")
async def arecord(value: Any) -> Any:
    ran.append((durable.aio.current_workflow_id() or "", value))
    return value


@pytest.fixture(scope="module")
def worker(sdk: None) -> Iterator[durable.Worker]:
    with durable.Worker([record, parent], lease_seconds=5) as running:
        yield running


def test_sdk_a_delayed_start_returns_at_once_and_a_worker_runs_it_when_due(
    worker: durable.Worker,
) -> None:
    began = time.monotonic()
    with durable.set_start_options(delay=1.0):
        handle = durable.start_workflow(record, "later")
    assert time.monotonic() - began < 0.5
    # Not run here as its starter, though a worker runs in this process: ENQUEUED.
    assert handle.status() is durable.WorkflowStatus.ENQUEUED
    info = durable.get_workflow(handle.workflow_id)
    assert info.due_time is not None and info.executor_id is None
    text = "\n".join(show_lines(info, [], {}))
    assert "due" in text and "(in " in text
    assert workflow_json(info)["due_time"] is not None
    assert handle.result(timeout=10) == "later"
    assert time.monotonic() - began >= 1.0
    done = durable.get_workflow(handle.workflow_id)
    assert done.executor_id == worker.executor_id
    assert ran.count((handle.workflow_id, "later")) == 1

    # By name, `at`, and enqueue on a queue.
    with durable.set_start_options(delay=0.2):
        by_name = durable.start_workflow("tests.delayed.record", "by-name")
    assert durable.get_workflow(by_name.workflow_id).due_time is not None
    assert by_name.result(timeout=10) == "by-name"
    with durable.set_start_options(at=datetime.now(timezone.utc) + timedelta(seconds=0.3)):
        assert durable.start_workflow(record, "at").result(timeout=10) == "at"
    queue = durable.Queue(f"q-{tag()}")
    with durable.Worker([record], queues=[queue], lease_seconds=5):
        with durable.set_start_options(delay=timedelta(seconds=0.3)):
            queued = queue.enqueue(record, "queued")
        assert queued.status() is durable.WorkflowStatus.ENQUEUED
        assert queued.result(timeout=10) == "queued"
    assert durable.get_workflow(queued.workflow_id).queue_name == queue.name


def test_sdk_a_workflow_starts_a_delayed_child_that_a_worker_runs(worker: durable.Worker) -> None:
    with durable.set_workflow_id(new_id("parent")):
        child_id = durable.start_workflow(parent, 0.3).result(timeout=10)
    child = durable.retrieve_workflow(child_id)
    assert child.result(timeout=10) == "from-parent"
    assert durable.get_workflow(child_id).due_time is not None


def test_sdk_a_debounced_burst_from_100_threads_runs_once_with_the_last_input(
    worker: durable.Worker, pool: ThreadPoolExecutor
) -> None:
    key = f"burst-{tag()}"

    def one(value: Any) -> str:
        with durable.set_start_options(debounce_key=key, debounce=0.5):
            return durable.start_workflow(record, value).workflow_id

    ids = set(pool.map(one, range(100)))
    last = one("last")
    assert ids == {last}
    handle = durable.retrieve_workflow(last)
    assert handle.result(timeout=10) == "last"
    assert [v for w, v in ran if w == last] == ["last"]
    info = durable.get_workflow(last)
    assert info.debounce_key == key and info.input == {"args": ["last"], "kwargs": {}}
    # The next burst is another workflow.
    again = one("again")
    assert again != last and durable.retrieve_workflow(again).result(timeout=10) == "again"


def test_async_face_delayed_and_debounced(sdk: None, coordinator: Coordinator) -> None:
    durable.aio.configure(coordinator.address)
    key = f"aburst-{tag()}"

    async def main() -> tuple[Any, Any, set[str], float]:
        async with durable.aio.Worker([arecord], lease_seconds=5):
            began = time.monotonic()
            with durable.aio.set_start_options(delay=0.5):
                handle = await durable.aio.start_workflow(arecord, "later")
            assert await handle.status() is durable.WorkflowStatus.ENQUEUED
            waited = time.monotonic() - began

            async def one(value: Any) -> str:
                with durable.aio.set_start_options(debounce_key=key, debounce=0.5):
                    return (await durable.aio.start_workflow(arecord, value)).workflow_id

            ids = set(await asyncio.gather(*(one(i) for i in range(100))))
            last = await one("last")
            ids.add(last)
            burst = await durable.aio.retrieve_workflow(last)
            return await handle.result(timeout=10), await burst.result(timeout=10), ids, waited

    later, last, ids, waited = asyncio.run(main())
    assert waited < 0.5 and later == "later"
    assert last == "last" and len(ids) == 1
    (workflow_id,) = ids
    assert [v for w, v in ran if w == workflow_id] == ["last"]


def test_sdk_start_options_are_checked() -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"delay": -1}, "delay"),
        ({"delay": 366 * 24 * 3600}, "delay"),
        ({"delay": timedelta(days=366)}, "delay"),
        ({"delay": 1, "at": datetime.now(timezone.utc)}, "delay or at"),
        ({"at": datetime.now() + timedelta(seconds=5)}, "time zone"),
        ({"at": datetime.now(timezone.utc) + timedelta(days=366)}, "365 days"),
        ({"debounce": 1}, "debounce_key"),
        ({"debounce_key": "k"}, "debounce"),
        ({"debounce_key": "k", "debounce": 0}, "debounce"),
        ({"debounce_key": "k", "debounce": 86_401}, "debounce"),
        ({"debounce_key": "", "debounce": 1}, "debounce_key"),
        ({"debounce_key": "k", "debounce": 1, "delay": 1}, "debounce_key"),
    ]
    for options, named in bad:
        with pytest.raises(ValueError, match=named), durable.set_start_options(**options):
            pass
    with pytest.raises(TypeError), durable.set_start_options(delay="soon"):  # type: ignore[arg-type]
        pass


@durable.workflow(name="tests.delayed.debounced_parent")
def debounced_parent() -> None:
    with durable.set_start_options(debounce_key="k", debounce=1):
        durable.start_workflow(record, "child")


def test_sdk_a_debounced_child_is_refused(worker: durable.Worker) -> None:
    with pytest.raises(durable.DurableError, match="child"):
        debounced_parent()


def test_sdk_start_options_end_with_their_block(worker: durable.Worker) -> None:
    with durable.set_start_options(delay=30):
        pass
    handle = durable.start_workflow(record, "now")
    assert handle.result(timeout=10) == "now"
    assert durable.get_workflow(handle.workflow_id).due_time is None


def test_cli_show_and_list_print_the_due_time(coordinator: Coordinator, stub: Stub) -> None:
    from tests.test_cli import ok

    name = f"cli.{tag()}"
    workflow = start(stub, name, 1, delay=duration(600)).workflow
    shown = ok(coordinator, "workflows", "show", workflow.workflow_id)
    assert re.search(r"^due\s+\S+ \(in \d+\.\ds\)$", shown, re.MULTILINE), shown
    listed = ok(coordinator, "workflows", "list", "--name", name)
    header, row = listed.splitlines()[:2]
    assert header.split()[-1] == "DUE" and "(in " in row
    as_json = json.loads(ok(coordinator, "workflows", "list", "--name", name, "--json"))
    assert as_json[0]["due_time"] is not None and as_json[0]["debounce_key"] is None
