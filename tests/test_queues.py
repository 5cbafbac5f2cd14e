"""Queues on the wire: enqueue (StartWorkflow with queue_name), ConfigureQueue, workers
serving queues (Heartbeat.queues) and PollWork claiming within each queue's limits.

Claims are counted in the database, not inferred: every claim sets dequeued_at and the
executor, and a finish sets updated_at, all by the database's clock, so the overlap of
running workflows and the claims per rate window are exact.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import grpc
import psycopg
import pytest

from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
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

Row = tuple[str, datetime | None, datetime, str]


@pytest.fixture
def names() -> tuple[str, str]:
    """A fresh (queue name, workflow name) pair, so tests never see each other's work."""
    tag = uuid.uuid4().hex[:10]
    return f"q-{tag}", f"wf-{tag}"


def heartbeat(
    stub: Stub, executor: str, workflow_names: list[str], queues: list[str], lease: float = 30
) -> None:
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor,
            workflow_names=workflow_names,
            queues=queues,
            lease=duration(lease),
        ),
        timeout=RPC_TIMEOUT,
    )


def session(stub: Stub, name: str, queue: str) -> str:
    executor = new_id("exec")
    heartbeat(stub, executor, [name], [queue])
    return executor


def poll(stub: Stub, executor: str, n: int = 1, wait: float = 0.0) -> list[pb.Workflow]:
    reply = stub.PollWork(
        pb.PollWorkRequest(executor_id=executor, max_workflows=n, timeout=duration(wait)),
        timeout=wait + RPC_TIMEOUT,
    )
    return list(reply.workflows)


def enqueue(
    stub: Stub,
    name: str,
    queue: str,
    workflow_id: str = "",
    *,
    priority: int = 0,
    dedup: str = "",
) -> pb.StartWorkflowResponse:
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id or new_id("queued"),
            name=name,
            input=payload({"args": [], "kwargs": {}}),
            queue_name=queue,
            priority=priority,
            deduplication_id=dedup,
        ),
        timeout=RPC_TIMEOUT,
    )


def configure(stub: Stub, queue: str, **limits: object) -> pb.QueueConfig:
    period = limits.pop("rate_period", None)
    config = pb.QueueConfig(name=queue, **limits)  # type: ignore[arg-type]
    if period is not None:
        assert isinstance(period, float | int)
        config.rate_period.CopyFrom(duration(period))
    return stub.ConfigureQueue(pb.ConfigureQueueRequest(queue=config), timeout=RPC_TIMEOUT).queue


def queue_rows(database_url: str, queue: str) -> list[Row]:
    """(workflow_id, dequeued_at, updated_at, status) of every workflow of the queue."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT workflow_id, dequeued_at, updated_at, status FROM durable.workflows"
            " WHERE queue_name = %s",
            (queue,),
        ).fetchall()
    return [(str(r[0]), r[1], r[2], str(r[3])) for r in found]


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals [start, end) open at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    # At equal times an end sorts first (-1 < 1): a claim right at a finish is no overlap.
    running = peak = 0
    for _, change in points:
        running += change
        peak = max(peak, running)
    return peak


# --- enqueue -------------------------------------------------------------------------------


def test_an_enqueued_workflow_waits_with_its_queue_fields_and_a_repeat_returns_it(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    workflow_id = new_id("queued")
    first = enqueue(stub, name, queue, workflow_id, priority=-3, dedup="d-1")
    assert first.created
    workflow = first.workflow
    assert workflow.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert (workflow.queue_name, workflow.priority, workflow.deduplication_id) == (
        queue,
        -3,
        "d-1",
    )
    assert not workflow.executor_id
    again = enqueue(stub, name, queue, workflow_id, priority=-3, dedup="d-1")
    assert not again.created
    assert again.workflow.workflow_id == workflow_id


def test_only_a_worker_serving_the_queue_claims_its_workflows(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    workflow_id = enqueue(stub, name, queue).workflow.workflow_id
    bystander = new_id("exec")
    heartbeat(stub, bystander, [name], [])  # runs the name, but not the queue
    assert poll(stub, bystander, 10) == []
    other_queue = new_id("exec")
    heartbeat(stub, other_queue, [name], [queue + "-other"])
    assert poll(stub, other_queue, 10) == []
    wrong_name = new_id("exec")
    heartbeat(stub, wrong_name, [name + "-other"], [queue])
    assert poll(stub, wrong_name, 10) == []

    server = session(stub, name, queue)
    claimed = poll(stub, server, 10)
    assert [w.workflow_id for w in claimed] == [workflow_id]
    assert claimed[0].status == pb.WORKFLOW_STATUS_PENDING
    assert claimed[0].executor_id == server
    assert claimed[0].queue_name == queue
    assert poll(stub, server, 10) == []


def test_a_start_with_an_executor_does_not_take_a_queued_workflow_past_its_queue(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    workflow_id = enqueue(stub, name, queue).workflow.workflow_id
    executor = session(stub, name, "unrelated")
    reply = stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, executor_id=executor),
        timeout=RPC_TIMEOUT,
    )
    assert reply.workflow.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert not reply.workflow.executor_id


def test_priority_then_age_orders_the_claims(stub: Stub, names: tuple[str, str]) -> None:
    queue, name = names
    order = [("late-low", 5), ("urgent", -1), ("normal-1", 0), ("normal-2", 0), ("low", 5)]
    ids = {label: enqueue(stub, name, queue, new_id(label), priority=p) for label, p in order}
    executor = session(stub, name, queue)
    claimed = [poll(stub, executor, 1)[0].workflow_id for _ in order]
    expected = ["urgent", "normal-1", "normal-2", "late-low", "low"]
    assert claimed == [ids[label].workflow.workflow_id for label in expected]


def test_a_deduplication_id_is_held_while_its_workflow_is_live(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    holder = enqueue(stub, name, queue, dedup="user-7").workflow.workflow_id
    err = rpc_error(lambda: enqueue(stub, name, queue, dedup="user-7"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(err)
    assert info.reason == "QUEUE_DEDUPLICATED"
    assert info.metadata["existing_workflow_id"] == holder
    # Another queue, or another ID, is not a duplicate.
    enqueue(stub, name, queue + "-b", dedup="user-7")
    enqueue(stub, name, queue, dedup="user-8")

    executor = session(stub, name, queue)
    claimed = {w.workflow_id for w in poll(stub, executor, 10)}
    assert holder in claimed
    # Still held while PENDING.
    err = rpc_error(lambda: enqueue(stub, name, queue, dedup="user-7"))
    assert error_info(err).metadata["existing_workflow_id"] == holder
    finish(stub, holder)
    again = enqueue(stub, name, queue, dedup="user-7")
    assert again.created and again.workflow.workflow_id != holder


def test_configure_queue_stores_and_replaces_the_limits(stub: Stub, names: tuple[str, str]) -> None:
    queue, _ = names
    config = configure(
        stub, queue, concurrency=4, worker_concurrency=2, rate_limit=10, rate_period=2.5
    )
    assert (config.name, config.concurrency, config.worker_concurrency, config.rate_limit) == (
        queue,
        4,
        2,
        10,
    )
    assert config.rate_period.ToNanoseconds() == 2_500_000_000
    replaced = configure(stub, queue, concurrency=1)
    assert (replaced.concurrency, replaced.worker_concurrency, replaced.rate_limit) == (1, 0, 0)
    assert not replaced.HasField("rate_period")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (pb.QueueConfig(), "queue.name"),
        (pb.QueueConfig(name="x" * 257), "queue.name"),
        (pb.QueueConfig(name="a\nb"), "queue.name"),
        (pb.QueueConfig(name="q", concurrency=-1), "queue.concurrency"),
        (pb.QueueConfig(name="q", worker_concurrency=-1), "queue.worker_concurrency"),
        (pb.QueueConfig(name="q", rate_limit=-1), "queue.rate_limit"),
        (pb.QueueConfig(name="q", rate_limit=5), "queue.rate_period"),
        (pb.QueueConfig(name="q", rate_period=duration(1)), "queue.rate_period"),
        (pb.QueueConfig(name="q", rate_limit=5, rate_period=duration(0)), "queue.rate_period"),
        (
            pb.QueueConfig(name="q", rate_limit=5, rate_period=duration(86_401)),
            "queue.rate_period",
        ),
    ],
)
def test_configure_queue_rejects_bad_limits(stub: Stub, config: pb.QueueConfig, field: str) -> None:
    err = rpc_error(
        lambda: stub.ConfigureQueue(pb.ConfigureQueueRequest(queue=config), timeout=RPC_TIMEOUT)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field


def test_configure_queue_requires_a_queue(stub: Stub) -> None:
    err = rpc_error(lambda: stub.ConfigureQueue(pb.ConfigureQueueRequest(), timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == "queue"


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"queue_name": "q", "executor_id": "exec-1"}, "queue_name"),
        ({"priority": 3}, "priority"),
        ({"deduplication_id": "d"}, "deduplication_id"),
        ({"queue_name": "q", "deduplication_id": "x" * 257}, "deduplication_id"),
        ({"queue_name": "bad\x00name"}, "queue_name"),
    ],
)
def test_start_workflow_rejects_bad_queue_fields(
    stub: Stub, request_fields: dict[str, object], field: str
) -> None:
    request = pb.StartWorkflowRequest(workflow_id=new_id(), name="wf", **request_fields)  # type: ignore[arg-type]
    err = rpc_error(lambda: stub.StartWorkflow(request, timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field


def test_heartbeat_rejects_bad_queue_names(stub: Stub) -> None:
    for queues in (["ok", ""], ["x" * 257], ["q"] * 1001):
        err = rpc_error(lambda q=queues: heartbeat(stub, new_id("exec"), ["wf"], q))  # type: ignore[misc]
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err).metadata["field"] == "queues"


def test_list_workflows_filters_by_queue(stub: Stub, names: tuple[str, str]) -> None:
    queue, name = names
    ids = {enqueue(stub, name, queue).workflow.workflow_id for _ in range(3)}
    enqueue(stub, name, queue + "-elsewhere")
    reply = stub.ListWorkflows(pb.ListWorkflowsRequest(queue_name=queue), timeout=RPC_TIMEOUT)
    assert {w.workflow_id for w in reply.workflows} == ids


# --- limits ------------------------------------------------------------------------------


def test_worker_concurrency_caps_each_worker(stub: Stub, names: tuple[str, str]) -> None:
    queue, name = names
    configure(stub, queue, worker_concurrency=2)
    for _ in range(6):
        enqueue(stub, name, queue)
    first, second = session(stub, name, queue), session(stub, name, queue)
    mine = poll(stub, first, 10)
    assert len(mine) == 2
    assert poll(stub, first, 10) == []
    assert len(poll(stub, second, 10)) == 2
    finish(stub, mine[0].workflow_id)
    assert len(poll(stub, first, 10)) == 1


def test_global_concurrency_caps_all_workers_and_a_finish_frees_a_slot(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    configure(stub, queue, concurrency=3)
    for _ in range(5):
        enqueue(stub, name, queue)
    workers = [session(stub, name, queue) for _ in range(3)]
    claimed = [w for executor in workers for w in poll(stub, executor, 10)]
    assert len(claimed) == 3
    assert all(poll(stub, executor, 10) == [] for executor in workers)
    finish(stub, claimed[0].workflow_id)
    assert len(poll(stub, workers[2], 10)) == 1
    # A cancel frees a slot too.
    stub.CancelWorkflow(
        pb.CancelWorkflowRequest(workflow_id=claimed[1].workflow_id), timeout=RPC_TIMEOUT
    )
    assert len(poll(stub, workers[1], 10)) == 1


def test_a_waiting_poller_is_woken_when_a_slot_frees(
    stub: Stub, other_coordinator: Coordinator, names: tuple[str, str]
) -> None:
    """A finish on one coordinator wakes a PollWork parked on another (NOTIFY), promptly
    rather than at its next periodic look."""
    queue, name = names
    configure(stub, queue, concurrency=1)
    enqueue(stub, name, queue)
    waiting_id = enqueue(stub, name, queue).workflow.workflow_id
    runner = session(stub, name, queue)
    (running,) = poll(stub, runner, 10)
    waiter = session(stub, name, queue)
    other = other_coordinator.stub
    with ThreadPoolExecutor(1) as pool:
        parked = pool.submit(poll, other, waiter, 1, 20.0)
        time.sleep(0.3)  # let it park; the assertion below holds either way
        assert not parked.done()
        finished_at = time.monotonic()
        finish(stub, running.workflow_id)
        woken = parked.result(timeout=PROMPT + 5)
    assert [w.workflow_id for w in woken] == [waiting_id]
    assert time.monotonic() - finished_at < PROMPT


def test_rate_limit_caps_claims_per_period(
    stub: Stub, database_url: str, names: tuple[str, str]
) -> None:
    queue, name = names
    limit, period = 3, 0.6
    configure(stub, queue, rate_limit=limit, rate_period=period)
    total = 10
    for _ in range(total):
        enqueue(stub, name, queue)
    workers = [session(stub, name, queue) for _ in range(4)]
    claimed: list[str] = []
    deadline = time.monotonic() + 30
    while len(claimed) < total and time.monotonic() < deadline:
        for executor in workers:
            claimed += [w.workflow_id for w in poll(stub, executor, 10)]
        time.sleep(0.02)
    assert len(claimed) == total == len(set(claimed))
    times = sorted(dequeued for _, dequeued, _, _ in queue_rows(database_url, queue) if dequeued)
    window = timedelta(seconds=period)
    per_window = [sum(1 for t in times if end - window < t <= end) for end in times]
    assert max(per_window) == limit  # reached, never passed
    # It really waited: 10 claims at 3 per period take at least 3 periods.
    assert times[-1] - times[0] >= 3 * window


def test_rate_limit_rejects_nothing_but_delays(stub: Stub, names: tuple[str, str]) -> None:
    queue, name = names
    configure(stub, queue, rate_limit=1, rate_period=30.0)
    enqueue(stub, name, queue)
    enqueue(stub, name, queue)
    executor = session(stub, name, queue)
    assert len(poll(stub, executor, 10)) == 1
    assert poll(stub, executor, 10, wait=0.3) == []


def test_a_resumed_queued_workflow_goes_back_through_its_queue(
    stub: Stub, names: tuple[str, str]
) -> None:
    queue, name = names
    workflow_id = enqueue(stub, name, queue).workflow.workflow_id
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    resumed = stub.ResumeWorkflow(
        pb.ResumeWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).workflow
    assert resumed.status == pb.WORKFLOW_STATUS_ENQUEUED and resumed.queue_name == queue
    outsider = new_id("exec")
    heartbeat(stub, outsider, [name], [])
    assert poll(stub, outsider, 10) == []
    assert [w.workflow_id for w in poll(stub, session(stub, name, queue), 10)] == [workflow_id]


def test_resuming_a_workflow_whose_deduplication_id_was_taken_is_refused(
    stub: Stub, names: tuple[str, str]
) -> None:
    """A cancelled holder frees its deduplication ID; once another workflow holds it,
    resuming the first would make two live holders: ALREADY_EXISTS, and nothing changes."""
    queue, name = names
    first = enqueue(stub, name, queue, dedup="order-9").workflow.workflow_id
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=first), timeout=RPC_TIMEOUT)
    second = enqueue(stub, name, queue, dedup="order-9").workflow.workflow_id

    err = rpc_error(
        lambda: stub.ResumeWorkflow(
            pb.ResumeWorkflowRequest(workflow_id=first), timeout=RPC_TIMEOUT
        )
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(err)
    assert (info.reason, info.metadata["existing_workflow_id"]) == ("QUEUE_DEDUPLICATED", second)
    still = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=first), timeout=RPC_TIMEOUT)
    assert still.workflow.status == pb.WORKFLOW_STATUS_CANCELLED
    # Once the holder is gone (cancelled here), the first may be resumed again.
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=second), timeout=RPC_TIMEOUT)
    resumed = stub.ResumeWorkflow(
        pb.ResumeWorkflowRequest(workflow_id=first), timeout=RPC_TIMEOUT
    ).workflow
    assert resumed.status == pb.WORKFLOW_STATUS_ENQUEUED


# --- many workers at once ----------------------------------------------------------------


@pytest.fixture
def eight_stubs(coordinator: Coordinator, other_coordinator: Coordinator) -> Iterator[list[Stub]]:
    """Eight channels, alternating between two coordinators on one database."""
    channels = [
        grpc.insecure_channel((coordinator if i % 2 else other_coordinator).address)
        for i in range(8)
    ]
    from durable.v1 import coordinator_pb2_grpc as pb_grpc

    yield [pb_grpc.CoordinatorServiceStub(channel) for channel in channels]
    for channel in channels:
        channel.close()


def test_eight_workers_polling_at_once_claim_each_workflow_exactly_once(
    stub: Stub, eight_stubs: list[Stub], database_url: str, names: tuple[str, str]
) -> None:
    queue, name = names
    total = 240
    for _ in range(total):
        enqueue(stub, name, queue)
    executors = [session(stub, name, queue) for _ in eight_stubs]
    start = threading.Barrier(len(executors))

    def drain(worker: int) -> list[tuple[str, str]]:
        mine: list[tuple[str, str]] = []
        start.wait()
        while True:
            got = poll(eight_stubs[worker], executors[worker], 7)
            if not got:
                return mine
            mine += [(w.workflow_id, w.executor_id) for w in got]

    with ThreadPoolExecutor(len(executors)) as pool:
        results = list(pool.map(drain, range(len(executors))))
    claims = [claim for result in results for claim in result]
    counts = Counter(workflow_id for workflow_id, _ in claims)
    assert len(counts) == total and max(counts.values()) == 1
    assert sum(1 for result in results if result) > 1  # it really was a race
    rows = queue_rows(database_url, queue)
    assert all(status == "PENDING" for _, _, _, status in rows)
    owner = {workflow_id: executor for workflow_id, executor in claims}
    with psycopg.connect(database_url) as conn:
        recorded: dict[str, str] = dict(
            conn.execute(
                "SELECT workflow_id, executor_id FROM durable.workflows WHERE queue_name = %s",
                (queue,),
            ).fetchall()
        )
    assert recorded == owner


def test_global_concurrency_holds_under_load(
    stub: Stub, eight_stubs: list[Stub], database_url: str, names: tuple[str, str]
) -> None:
    """Eight workers keep claiming and finishing; by the database's own timestamps, no
    instant ever had more than `concurrency` workflows of the queue running."""
    queue, name = names
    concurrency, total = 3, 60
    configure(stub, queue, concurrency=concurrency, worker_concurrency=2)
    for _ in range(total):
        enqueue(stub, name, queue)
    executors = [session(stub, name, queue) for _ in eight_stubs]
    done: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def work(worker: int) -> None:
        worker_stub, executor = eight_stubs[worker], executors[worker]
        while time.monotonic() < deadline:
            with lock:
                if len(done) >= total:
                    return
            for workflow in poll(worker_stub, executor, 5, wait=0.5):
                time.sleep(0.01)
                finish(worker_stub, workflow.workflow_id)
                with lock:
                    done.append(workflow.workflow_id)

    with ThreadPoolExecutor(len(executors)) as pool:
        list(pool.map(work, range(len(executors))))
    assert sorted(done) == sorted(set(done)) and len(done) == total
    rows = queue_rows(database_url, queue)
    intervals = [(dequeued, ended) for _, dequeued, ended, _ in rows if dequeued is not None]
    assert len(intervals) == total
    assert max_overlap(intervals) == concurrency  # reached, never passed
