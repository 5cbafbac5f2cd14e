"""Queues through the SDK: `durable.Queue`, `set_enqueue_options`, `Worker(queues=...)`, and
real worker processes serving one queue: every workflow runs exactly once, and the
queue's limits hold while they race."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durable
from tests.queue_harness import QueueWorkers, queue_workers_for
from tests.support import Coordinator, eventually, new_id
from tests.test_queues import max_overlap


@pytest.fixture
def workers(coordinator: Coordinator, tmp_path: Path) -> Iterator[QueueWorkers]:
    with queue_workers_for(coordinator.address, tmp_path) as pool:
        yield pool


def stand_in(workers: QueueWorkers) -> Any:
    """A local workflow under the name the worker processes run (only its name is used)."""
    return durable.workflow(name=workers.name_of("queued"))(lambda i: None)


def claims_in_logs(workers: QueueWorkers) -> Counter[str]:
    """How often each workflow was claimed, from every worker's log."""
    claimed = re.compile(r"workflow (\S+) \(\S+\) claimed")
    return Counter(
        match.group(1)
        for process in workers.processes
        for match in claimed.finditer(process.stderr())
    )


def claim_rows(database_url: str, queue: str) -> list[tuple[str, str, datetime, datetime]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT workflow_id, executor_id, dequeued_at, updated_at FROM durable.workflows"
            " WHERE queue_name = %s AND status = 'SUCCESS'",
            (queue,),
        ).fetchall()
    return [(str(a), str(b), c, d) for a, b, c, d in rows]


def test_workflows_enqueued_by_a_client_run_exactly_once_across_worker_processes(
    workers: QueueWorkers, sdk: None, database_url: str
) -> None:
    processes = [workers.spawn(f"w{i}", "--max-concurrent", "8") for i in range(4)]
    sessions = {process.wait_ready() for process in processes}
    queue = durable.Queue(workers.queue)
    total = 40
    handles = [queue.enqueue(stand_in(workers), i) for i in range(total)]
    assert [h.result(timeout=60) for h in handles] == [i * 10 for i in range(total)]

    effects = workers.effects
    runs = Counter(e.workflow_id for e in effects.all() if e.label == "q")
    assert set(runs) == {h.workflow_id for h in handles}
    assert max(runs.values()) == 1
    claims = eventually(lambda: (c := claims_in_logs(workers)) and sum(c.values()) >= total and c)
    assert claims == Counter({h.workflow_id: 1 for h in handles})
    owners = {executor for _, executor, _, _ in claim_rows(database_url, workers.queue)}
    assert owners <= sessions and len(owners) > 1  # they raced for them
    for handle in handles[:3]:
        info = durable.get_workflow(handle.workflow_id)
        assert info.queue_name == workers.queue and info.parent_workflow_id is None


def test_queue_limits_hold_across_worker_processes(
    workers: QueueWorkers, sdk: None, database_url: str
) -> None:
    limits = ("--concurrency", "3", "--worker-concurrency", "2", "--step-seconds", "0.15")
    processes = [workers.spawn(f"w{i}", *limits) for i in range(3)]
    for process in processes:
        process.wait_ready()
    queue = durable.Queue(workers.queue)
    total = 18
    handles = [queue.enqueue(stand_in(workers), i) for i in range(total)]
    for handle in handles:
        handle.result(timeout=60)

    rows = claim_rows(database_url, workers.queue)
    assert len(rows) == total
    assert max_overlap([(start, end) for _, _, start, end in rows]) == 3
    for executor in {row[1] for row in rows}:
        mine = [(start, end) for _, owner, start, end in rows if owner == executor]
        assert max_overlap(mine) <= 2
    # The steps themselves (by the workers' clocks) never overlapped more than 3 either.
    effects = workers.effects.all()
    begins = {e.workflow_id: e.time for e in effects if e.label == "q"}
    ends = {e.workflow_id: e.time for e in effects if e.label == "q-end"}
    steps = [(datetime.fromtimestamp(begins[w]), datetime.fromtimestamp(ends[w])) for w in begins]
    assert len(steps) == total and max_overlap(steps) <= 3


# --- the SDK API, in this process ----------------------------------------------------------


@durable.workflow(name="tests.queue.echo")
def echo(value: Any) -> Any:
    return value


def test_enqueue_options_set_priority_and_deduplication(sdk: None) -> None:
    queue = durable.Queue(new_id("sdk-queue"))
    with durable.set_enqueue_options(priority=4, deduplication_id="order-1"):
        first = queue.enqueue(echo, 1)
    info = durable.get_workflow(first.workflow_id)
    assert (info.status, info.queue_name, info.priority, info.deduplication_id) == (
        durable.WorkflowStatus.ENQUEUED,
        queue.name,
        4,
        "order-1",
    )
    with (
        durable.set_enqueue_options(deduplication_id="order-1"),
        pytest.raises(durable.QueueDeduplicatedError) as caught,
    ):
        queue.enqueue(echo, 2)
    assert caught.value.existing_workflow_id == first.workflow_id
    # Outside the block the options are gone.
    second = queue.enqueue(echo, 3)
    assert durable.get_workflow(second.workflow_id).deduplication_id is None
    listed = {w.workflow_id for w in durable.list_workflows(queue_name=queue.name)}
    assert listed == {first.workflow_id, second.workflow_id}
    # An ID chosen with set_workflow_id makes the enqueue idempotent.
    chosen = new_id("chosen")
    with durable.set_workflow_id(chosen):
        assert queue.enqueue(echo, 4).workflow_id == chosen
        assert queue.enqueue(echo, 4).workflow_id == chosen


def test_a_worker_configures_its_queues_and_runs_their_workflows(
    sdk: None, database_url: str
) -> None:
    queue = durable.Queue(new_id("sdk-queue"), concurrency=2, rate_limit=(100, 1.5))
    handle = queue.enqueue(echo, {"hello": "queue"})
    with durable.Worker([echo], queues=[queue]) as worker:
        assert handle.result(timeout=30) == {"hello": "queue"}
    assert durable.get_workflow(handle.workflow_id).executor_id == worker.executor_id
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT concurrency, worker_concurrency, rate_limit, extract(epoch FROM rate_period)"
            " FROM durable.queues WHERE name = %s",
            (queue.name,),
        ).fetchone()
    assert row is not None and row[:3] == (2, None, 100) and float(row[3]) == 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"worker_concurrency": -1},
        {"concurrency": 1.5},
        {"rate_limit": (0, 1.0)},
        {"rate_limit": (5, 0)},
        {"rate_limit": (5, 86_401)},
    ],
)
def test_bad_queue_limits_raise_at_once(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        durable.Queue("q", **kwargs)


def test_bad_queue_names_and_options_raise_at_once() -> None:
    with pytest.raises(ValueError):
        durable.Queue("")
    with pytest.raises(ValueError):
        durable.Queue("x" * 257)
    with pytest.raises(ValueError), durable.set_enqueue_options(priority=2**31):
        pass
    with pytest.raises(ValueError), durable.set_enqueue_options(deduplication_id=""):
        pass
    queue = durable.Queue(f"q-{uuid.uuid4().hex}")
    with pytest.raises(ValueError, match="two queues"):
        durable.Worker([echo], queues=[queue, durable.Queue(queue.name)])
    with pytest.raises(TypeError):
        durable.Worker([echo], queues=[queue.name])  # type: ignore[list-item]
