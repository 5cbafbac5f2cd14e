"""Partitioned queues: fair dispatch across a queue's partitions, concurrency and rate
limits per partition, GetQueue's load per partition, and the SDK's faces of them.

Claims here are raw Heartbeat + PollWork calls over real gRPC against a real coordinator
and Postgres, so the order a worker gets its workflows in is exactly the coordinator's.
Overlaps and rate windows are measured by the database's own timestamps (dequeued_at at a
claim, updated_at at a finish), as in tests/test_queues.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import grpc
import psycopg
import pytest

import durable
import durable.aio
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    duration,
    error_info,
    finish,
    new_id,
    payload,
    rpc_error,
)
from tests.test_queues import configure, max_overlap, poll, session

# What the fairness test reports (also printed: run with -s to see it).
FAIRNESS: dict[int, dict[str, int]] = {}


@pytest.fixture
def names() -> tuple[str, str]:
    """A fresh (queue name, workflow name) pair, so tests never see each other's work."""
    tag = uuid.uuid4().hex[:10]
    return f"pq-{tag}", f"pwf-{tag}"


def enqueue(
    stub: Stub,
    name: str,
    queue: str,
    partition: str = "",
    *,
    workflow_id: str = "",
    priority: int = 0,
    delay: float | None = None,
) -> pb.Workflow:
    request = pb.StartWorkflowRequest(
        workflow_id=workflow_id or new_id("part"),
        name=name,
        input=payload({"args": [], "kwargs": {}}),
        queue_name=queue,
        partition_key=partition,
        priority=priority,
    )
    if delay is not None:
        request.delay.CopyFrom(duration(delay))
    return stub.StartWorkflow(request, timeout=RPC_TIMEOUT).workflow


def get_queue(stub: Stub, queue: str, max_partitions: int = 0) -> pb.GetQueueResponse:
    return stub.GetQueue(
        pb.GetQueueRequest(name=queue, max_partitions=max_partitions), timeout=RPC_TIMEOUT
    )


def loads(reply: pb.GetQueueResponse) -> dict[str, tuple[int, int, int]]:
    return {p.partition_key: (p.enqueued, p.delayed, p.running) for p in reply.partitions}


def rows_by_partition(
    database_url: str, queue: str
) -> dict[str, list[tuple[datetime, datetime, str]]]:
    """(dequeued_at, updated_at, status) of each claimed workflow of the queue, by partition."""
    found: dict[str, list[tuple[datetime, datetime, str]]] = {}
    with psycopg.connect(database_url) as conn:
        for key, dequeued, updated, status in conn.execute(
            "SELECT coalesce(partition_key, ''), dequeued_at, updated_at, status"
            " FROM durable.workflows WHERE queue_name = %s AND dequeued_at IS NOT NULL",
            (queue,),
        ):
            found.setdefault(key, []).append((dequeued, updated, status))
    return found


# --- fairness ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 10, 50])
def test_a_busy_partition_does_not_starve_the_others(
    stub: Stub, pool: ThreadPoolExecutor, names: tuple[str, str], batch: int
) -> None:
    """One partition of 1,000 enqueued first, then ten of 10 (each partition's 10 in a row,
    so the last partition's first workflow is the youngest head). Oldest-first would serve
    the small partitions from claim 1,001 on; round robin serves each within the first
    round (11 claims), however many a claim takes, and drains them within about ten
    rounds, while the big partition gets its turn in every round."""
    queue, name = names
    list(pool.map(lambda _: enqueue(stub, name, queue, "big"), range(1000)))
    small = [f"tenant-{i}" for i in range(10)]
    for partition in small:
        for _ in range(10):
            enqueue(stub, name, queue, partition)
    executor = session(stub, name, queue)
    order: list[str] = []
    while got := poll(stub, executor, batch):
        assert len(got) <= batch
        order += [w.partition_key for w in got]
    assert Counter(order) == Counter({"big": 1000, **{p: 10 for p in small}})

    first = {p: order.index(p) + 1 for p in small}  # 1-based claim number
    drained = max(len(order) - order[::-1].index(p) for p in small)
    FAIRNESS[batch] = {"last_first_claim": max(first.values()), "small_drained_by": drained}
    print(f"\nbatch {batch}: {FAIRNESS[batch]}")
    # Round 1 is every partition's head: the big one's (oldest) first, then the small ones.
    assert order[0] == "big"
    assert sorted(first.values()) == list(range(2, 12))
    # Ten rounds of 11 empty the small partitions (a round of slack for batch edges).
    assert drained <= 121
    assert order[121:] == ["big"] * (len(order) - 121)
    # Every round of 11 claims gives the big partition its turn: it is never starved either.
    assert all("big" in order[i : i + 11 + batch] for i in range(0, 110, 11))


def test_turns_go_by_age_and_priority_orders_within_a_partition(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    a1 = enqueue(stub, name, queue, "a").workflow_id
    a2 = enqueue(stub, name, queue, "a").workflow_id
    none1 = enqueue(stub, name, queue).workflow_id  # no partition key: partition ''
    b1 = enqueue(stub, name, queue, "b").workflow_id
    a_urgent = enqueue(stub, name, queue, "a", priority=-5).workflow_id
    none2 = enqueue(stub, name, queue).workflow_id
    executor = session(stub, name, queue)
    claimed = [poll(stub, executor, 1)[0].workflow_id for _ in range(6)]
    # One workflow a claim, round robin: first the partitions never served, most urgent
    # head first, then oldest: a's urgent one (priority -5), '' (none1, older than b1),
    # b1; then the partition served longest ago: a (a1), '' (none2), and a again.
    assert claimed == [a_urgent, none1, b1, a1, none2, a2]


def test_workflows_without_a_partition_key_keep_priority_then_age(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    ids = [enqueue(stub, name, queue, priority=p).workflow_id for p in (5, 0, -1, 0)]
    executor = session(stub, name, queue)
    got = poll(stub, executor, 10)
    assert [w.workflow_id for w in got] == [ids[2], ids[1], ids[3], ids[0]]
    assert all(w.partition_key == "" for w in got)


def test_a_partition_key_without_per_partition_limits_is_accepted_and_the_queue_limits_hold(
    stub: Stub, names: tuple[str, str]
) -> None:
    """On a queue whose limits are for the whole queue (limits_per_partition false), a
    partition key is accepted, stored, and only makes dispatch fair: the whole queue
    still runs at most `concurrency` at once, over all partitions."""
    queue, name = names
    configure(stub, queue, concurrency=3)
    workflow = enqueue(stub, name, queue, "tenant-a")
    assert workflow.partition_key == "tenant-a"
    for _ in range(4):
        enqueue(stub, name, queue, "tenant-a")
    for _ in range(5):
        enqueue(stub, name, queue, "tenant-b")
    executor = session(stub, name, queue)
    got = poll(stub, executor, 10)
    assert len(got) == 3
    assert {w.partition_key for w in got} == {"tenant-a", "tenant-b"}
    assert poll(stub, executor, 10) == []
    finish(stub, got[0].workflow_id)
    assert len(poll(stub, executor, 10)) == 1


# --- limits per partition -------------------------------------------------------------------


def test_concurrency_per_partition_caps_each_partition_and_both_progress(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    config = configure(stub, queue, concurrency=2, limits_per_partition=True)
    assert config.limits_per_partition
    for partition in ("a", "b"):
        for _ in range(6):
            enqueue(stub, name, queue, partition)
    executor = session(stub, name, queue)
    got = poll(stub, executor, 100)
    assert Counter(w.partition_key for w in got) == Counter({"a": 2, "b": 2})
    assert poll(stub, executor, 100) == []  # both partitions full
    finish(stub, next(w.workflow_id for w in got if w.partition_key == "a"))
    again = poll(stub, executor, 100)
    assert [w.partition_key for w in again] == ["a"]  # a's freed slot, and only it
    assert loads(get_queue(stub, queue)) == {"a": (3, 0, 2), "b": (4, 0, 2)}


def test_concurrency_per_partition_holds_under_load(
    coordinator: Coordinator,
    other_coordinator: Coordinator,
    database_url: str,
    names: tuple[str, str],
) -> None:
    """Six workers on two coordinators keep claiming and finishing three partitions; by
    the database's timestamps no partition ever ran more than 2 at once, each reached 2,
    and the queue as a whole ran more than 2 (the limit is not the whole queue's)."""
    queue, name = names
    stubs = [coordinator.stub if i % 2 else other_coordinator.stub for i in range(6)]
    configure(stubs[0], queue, concurrency=2, limits_per_partition=True)
    partitions = ["a", "b", "c"]
    per_partition = 12
    for _ in range(per_partition):
        for partition in partitions:
            enqueue(stubs[0], name, queue, partition)
    total = per_partition * len(partitions)
    executors = [session(s, name, queue) for s in stubs]
    done: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def work(worker: int) -> None:
        stub, executor = stubs[worker], executors[worker]
        while time.monotonic() < deadline:
            with lock:
                if len(done) >= total:
                    return
            for workflow in poll(stub, executor, 3, wait=0.3):
                time.sleep(0.02)
                finish(stub, workflow.workflow_id)
                with lock:
                    done.append(workflow.workflow_id)

    with ThreadPoolExecutor(len(stubs)) as threads:
        list(threads.map(work, range(len(stubs))))
    assert len(done) == total == len(set(done))
    found = rows_by_partition(database_url, queue)
    assert sorted(found) == partitions
    for partition in partitions:
        intervals = [(dequeued, ended) for dequeued, ended, _ in found[partition]]
        assert len(intervals) == per_partition
        assert max_overlap(intervals) == 2, partition  # reached, never passed
    everything = [(d, e) for rows in found.values() for d, e, _ in rows]
    assert max_overlap(everything) > 2


def test_worker_concurrency_stays_per_worker_with_per_partition_limits(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    configure(stub, queue, concurrency=2, worker_concurrency=3, limits_per_partition=True)
    for partition in ("a", "b", "c"):
        for _ in range(3):
            enqueue(stub, name, queue, partition)
    first = session(stub, name, queue)
    got = poll(stub, first, 100)
    assert len(got) == 3
    assert {w.partition_key for w in got} == {"a", "b", "c"}  # one turn each
    second = session(stub, name, queue)
    more = poll(stub, second, 100)
    assert Counter(w.partition_key for w in more) == Counter({"a": 1, "b": 1, "c": 1})
    third = session(stub, name, queue)
    assert poll(stub, third, 100) == []  # every partition at its 2


def test_rate_limit_per_partition_caps_each_partition_not_the_queue(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    configure(stub, queue, rate_limit=2, rate_period=30.0, limits_per_partition=True)
    for partition in ("a", "b", "c"):
        for _ in range(4):
            enqueue(stub, name, queue, partition)
    executor = session(stub, name, queue)
    got = poll(stub, executor, 100)
    # 2 per partition: 6 in all, three times the queue's rate_limit had it been the queue's.
    assert Counter(w.partition_key for w in got) == Counter({"a": 2, "b": 2, "c": 2})
    for workflow in got:
        finish(stub, workflow.workflow_id)  # a finish frees no rate
    assert poll(stub, executor, 100, wait=0.3) == []
    enqueue(stub, name, queue, "d")
    assert [w.partition_key for w in poll(stub, executor, 100)] == ["d"]


def test_rate_limit_per_partition_over_time(
    stub: Stub, database_url: str, names: tuple[str, str]
) -> None:
    queue, name = names
    limit, period = 2, 0.6
    configure(stub, queue, rate_limit=limit, rate_period=period, limits_per_partition=True)
    for _ in range(6):
        for partition in ("a", "b"):
            enqueue(stub, name, queue, partition)
    executor = session(stub, name, queue)
    claimed: list[str] = []
    deadline = time.monotonic() + 30
    while len(claimed) < 12 and time.monotonic() < deadline:
        claimed += [w.workflow_id for w in poll(stub, executor, 10)]
        time.sleep(0.02)
    assert len(claimed) == 12 == len(set(claimed))
    window = timedelta(seconds=period)
    for partition, rows in rows_by_partition(database_url, queue).items():
        times = sorted(dequeued for dequeued, _, _ in rows)
        per_window = [sum(1 for t in times if end - window < t <= end) for end in times]
        assert max(per_window) == limit, partition  # reached, never passed
        assert times[-1] - times[0] >= 2 * window  # 6 at 2 per period take 3 periods


def test_a_delayed_workflow_is_not_claimed_before_it_is_due_and_counts_as_delayed(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    later = enqueue(stub, name, queue, "a", delay=3600).workflow_id
    now = enqueue(stub, name, queue, "a").workflow_id
    executor = session(stub, name, queue)
    assert [w.workflow_id for w in poll(stub, executor, 10)] == [now]
    assert poll(stub, executor, 10) == []
    reply = get_queue(stub, queue)
    assert loads(reply) == {"a": (1, 1, 1)}
    assert later


# --- GetQueue ------------------------------------------------------------------------------


def test_get_queue_counts_enqueued_delayed_and_running_per_partition(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    configure(stub, queue, concurrency=5, rate_limit=7, rate_period=60.0, limits_per_partition=True)
    for _ in range(4):
        enqueue(stub, name, queue, "big")
    enqueue(stub, name, queue, "big", delay=600)
    enqueue(stub, name, queue, "small")
    enqueue(stub, name, queue)  # no key
    enqueue(stub, name, queue, delay=600)
    executor = session(stub, name, queue)
    claimed = poll(stub, executor, 3)  # one turn each: big, small, ''
    assert {w.partition_key for w in claimed} == {"big", "small", ""}
    finish(stub, next(w.workflow_id for w in claimed if w.partition_key == "small"))

    reply = get_queue(stub, queue)
    assert (reply.queue.name, reply.queue.concurrency, reply.queue.rate_limit) == (queue, 5, 7)
    assert reply.queue.limits_per_partition
    assert reply.queue.rate_period.ToNanoseconds() == 60 * 10**9
    total = reply.total
    assert (total.partition_key, total.enqueued, total.delayed, total.running) == ("", 5, 2, 2)
    # Most enqueued first; a finished workflow is no load, so "small" is gone.
    assert [p.partition_key for p in reply.partitions] == ["big", ""]
    assert loads(reply) == {"big": (4, 1, 1), "": (1, 1, 1)}
    assert not reply.partitions_truncated


def test_get_queue_truncates_to_max_partitions_busiest_first(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    for i in range(5):
        for _ in range(i + 1):
            enqueue(stub, name, queue, f"p{i}")
    reply = get_queue(stub, queue, max_partitions=2)
    assert [(p.partition_key, p.enqueued) for p in reply.partitions] == [("p4", 5), ("p3", 4)]
    assert reply.partitions_truncated
    assert reply.total.enqueued == 15
    everything = get_queue(stub, queue, max_partitions=5)
    assert len(everything.partitions) == 5 and not everything.partitions_truncated
    default = get_queue(stub, queue)  # 0: up to 100
    assert len(default.partitions) == 5 and not default.partitions_truncated


def test_an_unknown_queue_is_all_zeros_not_an_error(stub: Stub) -> None:
    """A queue is only a name: one never configured nor used has no limits and no load."""
    queue = new_id("never")
    reply = get_queue(stub, queue)
    assert reply.queue == pb.QueueConfig(name=queue)
    assert (reply.total.enqueued, reply.total.delayed, reply.total.running) == (0, 0, 0)
    assert list(reply.partitions) == [] and not reply.partitions_truncated


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field", "says"),
    [
        ({"partition_key": "tenant-a"}, "partition_key", "only with queue_name"),
        ({"queue_name": "q", "partition_key": "x" * 257}, "partition_key", "longer than 256"),
        ({"queue_name": "q", "partition_key": "bad\nkey"}, "partition_key", "control"),
        ({"queue_name": "q", "partition_key": "nul\x00"}, "partition_key", "control"),
    ],
)
def test_start_workflow_rejects_a_bad_partition_key(
    stub: Stub, request_fields: dict[str, object], field: str, says: str
) -> None:
    request = pb.StartWorkflowRequest(workflow_id=new_id(), name="wf", **request_fields)  # type: ignore[arg-type]
    err = rpc_error(lambda: stub.StartWorkflow(request, timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field
    assert says in (err.details() or "")


def test_a_partition_key_of_256_characters_any_printable_ones_is_accepted(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    for key in ("k" * 256, "tenant/ü 7 — ✓"):
        assert enqueue(stub, name, queue, key).partition_key == key


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"name": "q", "max_partitions": -1}, "max_partitions"),
        ({"name": "q", "max_partitions": 1001}, "max_partitions"),
        ({"name": ""}, "name"),
        ({"name": "x" * 257}, "name"),
        ({"name": "bad\x01"}, "name"),
    ],
)
def test_get_queue_rejects_bad_input(
    stub: Stub, request_fields: dict[str, object], field: str
) -> None:
    request = pb.GetQueueRequest(**request_fields)  # type: ignore[arg-type]
    err = rpc_error(lambda: stub.GetQueue(request, timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field


# --- the SDK ---------------------------------------------------------------------------------


@durable.workflow(name="tests.partitions.record")
def record(tag: str) -> str:
    return tag


@durable.workflow(name="tests.partitions.record_async")
async def record_async(tag: str) -> str:
    return tag


@pytest.fixture
def sdk_queue() -> durable.Queue:
    return durable.Queue(
        f"tests-partitions-{uuid.uuid4().hex[:8]}",
        concurrency=1,
        rate_limit=(100, 60.0),
        limits_per_partition=True,
    )


def test_the_sdk_enqueues_on_a_partition_and_get_queue_shows_it(
    sdk: None, sdk_queue: durable.Queue
) -> None:
    sdk_queue.configure()
    with durable.set_enqueue_options(partition_key="tenant-a"):
        a = [sdk_queue.enqueue(record, f"a{i}") for i in range(3)]
    with durable.set_enqueue_options(partition_key="tenant-b", priority=2):
        b = sdk_queue.enqueue(record, "b0")
    plain = sdk_queue.enqueue(record, "none")
    assert durable.get_workflow(a[0].workflow_id).status == durable.WorkflowStatus.ENQUEUED

    info = durable.get_queue(sdk_queue)
    assert info == durable.get_queue(sdk_queue.name)
    assert (info.name, info.concurrency, info.worker_concurrency) == (sdk_queue.name, 1, None)
    assert info.rate_limit == (100, 60.0) and info.limits_per_partition
    assert info.total == durable.QueueLoad("", 5, 0, 0)
    assert info.partitions == [
        durable.QueueLoad("tenant-a", 3, 0, 0),
        durable.QueueLoad("", 1, 0, 0),
        durable.QueueLoad("tenant-b", 1, 0, 0),
    ]
    assert not info.partitions_truncated
    one = durable.get_queue(sdk_queue, max_partitions=1)
    assert [p.partition_key for p in one.partitions] == ["tenant-a"]
    assert one.partitions_truncated

    with durable.Worker([record], queues=[sdk_queue], name=new_id("partitions")):
        assert [h.result(timeout=30) for h in a] == ["a0", "a1", "a2"]
        assert b.result(timeout=30) == "b0" and plain.result(timeout=30) == "none"
    assert durable.get_queue(sdk_queue).total == durable.QueueLoad("", 0, 0, 0)


def test_the_async_face_enqueues_on_a_partition_and_gets_the_queue(
    coordinator: Coordinator, sdk_queue: durable.Queue
) -> None:
    async def scenario() -> None:
        durable.aio.configure(coordinator.address)
        try:
            with durable.set_enqueue_options(partition_key="tenant-z"):
                handle = await durable.aio.enqueue(sdk_queue, record_async, "z")
            info = await durable.aio.get_queue(sdk_queue.name)
            assert info.partitions == [durable.QueueLoad("tenant-z", 1, 0, 0)]
            assert info == await durable.aio.get_queue(sdk_queue)
            assert info.concurrency is None  # never configured: the Worker does that
            async with durable.aio.Worker([record_async], queues=[sdk_queue]):
                assert await handle.result(timeout=30) == "z"
            info = await durable.aio.get_queue(sdk_queue, max_partitions=5)
            assert info.concurrency == 1 and info.limits_per_partition
        finally:
            await durable.aio.close()

    asyncio.run(scenario())


def test_the_sdk_checks_partition_options_before_sending() -> None:
    for bad in ("", "x" * 257, "tab\there"):
        with (
            pytest.raises(ValueError, match="partition_key"),
            durable.set_enqueue_options(partition_key=bad),
        ):
            pass
    with pytest.raises(TypeError, match="limits_per_partition"):
        durable.Queue("q", limits_per_partition="yes")  # type: ignore[arg-type]
    for bad_max in (0, 1001, True):
        with pytest.raises(ValueError, match="max_partitions"):
            durable.get_queue("q", max_partitions=bad_max)
    assert "limits_per_partition=True" in repr(durable.Queue("q", limits_per_partition=True))


def test_a_worker_stores_limits_per_partition(sdk: None, sdk_queue: durable.Queue) -> None:
    with durable.Worker([record], queues=[sdk_queue], name=new_id("partitions")):
        info = durable.get_queue(sdk_queue)
    assert info.limits_per_partition and info.concurrency == 1
