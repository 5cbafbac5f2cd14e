"""Bulk actions (CancelWorkflows, ResumeWorkflows) and queue pause (PauseQueue,
ResumeQueue) over real gRPC against real coordinator processes and Postgres.

Large sets are inserted straight into durable.workflows (one INSERT of N rows): what is
tested is the bulk action over them, not N starts."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    duration,
    error_info,
    eventually,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    start_pending,
)

Ops = opb_grpc.OperationsServiceStub

CANCELLED = pb.WORKFLOW_STATUS_CANCELLED
ENQUEUED = pb.WORKFLOW_STATUS_ENQUEUED
PENDING = pb.WORKFLOW_STATUS_PENDING


@pytest.fixture(scope="module")
def ops(coordinator: Coordinator) -> Ops:
    return Ops(coordinator.channel)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def enqueue(stub: Stub, name: str, queue: str, **fields: object) -> str:
    workflow_id = new_id(name)
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name=name,
            queue_name=queue,
            input=payload({"args": [], "kwargs": {}}),
            **fields,  # type: ignore[arg-type]
        ),
        timeout=RPC_TIMEOUT,
    )
    return workflow_id


def insert_enqueued(database_url: str, name: str, count: int, queue: str | None = None) -> None:
    """`count` ENQUEUED workflows named `name` in the default namespace, in one INSERT."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO durable.workflows (workflow_id, namespace, name, status, queue_name)
               SELECT %(name)s || '-' || n, 'default', %(name)s, 'ENQUEUED', %(queue)s
                 FROM generate_series(1, %(count)s) AS n""",
            {"name": name, "count": count, "queue": queue},
        )


def statuses(database_url: str, name: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT status, count(*) FROM durable.workflows WHERE name = %s GROUP BY status",
            (name,),
        ).fetchall()
    return {status: n for status, n in found}


def status_of(stub: Stub, workflow_id: str) -> int:
    reply = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    return reply.workflow.status


def cancel(ops: Ops, **filters: object) -> list[opb.BulkProgress]:
    dry_run = bool(filters.pop("dry_run", False))
    match_all = bool(filters.pop("match_all", False))
    request = opb.CancelWorkflowsRequest(
        filter=pb.ListWorkflowsRequest(**filters),  # type: ignore[arg-type]
        dry_run=dry_run,
        match_all=match_all,
    )
    return [m.progress for m in ops.CancelWorkflows(request, timeout=60)]


def resume(ops: Ops, **filters: object) -> list[opb.BulkProgress]:
    dry_run = bool(filters.pop("dry_run", False))
    request = opb.ResumeWorkflowsRequest(
        filter=pb.ListWorkflowsRequest(**filters),  # type: ignore[arg-type]
        dry_run=dry_run,
    )
    return [m.progress for m in ops.ResumeWorkflows(request, timeout=60)]


def final(progress: list[opb.BulkProgress]) -> tuple[int, int]:
    assert progress and progress[-1].done
    assert not any(p.done for p in progress[:-1])
    return progress[-1].matched, progress[-1].changed


# --- dry run, filters, progress -------------------------------------------------------------


def test_a_dry_run_counts_and_changes_nothing(stub: Stub, ops: Ops) -> None:
    name, queue = f"dry-{tag()}", f"q-{tag()}"
    ids = [enqueue(stub, name, queue) for _ in range(3)]
    start_pending(stub, name=name)

    progress = cancel(ops, name=name, dry_run=True)
    assert len(progress) == 1 and final(progress) == (4, 0)
    assert all(status_of(stub, w) == ENQUEUED for w in ids)
    # Narrowed by status; a status the action does not apply to counts nothing.
    assert final(cancel(ops, name=name, statuses=[PENDING], dry_run=True)) == (1, 0)
    assert final(cancel(ops, name=name, statuses=[CANCELLED], dry_run=True)) == (0, 0)
    assert final(resume(ops, name=name, dry_run=True)) == (0, 0)


def test_cancel_by_status_and_name_changes_only_those(stub: Stub, ops: Ops) -> None:
    name, other, queue = f"cancel-{tag()}", f"keep-{tag()}", f"q-{tag()}"
    queued = [enqueue(stub, name, queue) for _ in range(3)]
    running = start_pending(stub, name=name)
    untouched = enqueue(stub, other, queue)

    assert final(cancel(ops, name=name, statuses=[ENQUEUED])) == (3, 3)
    assert all(status_of(stub, w) == CANCELLED for w in queued)
    assert status_of(stub, running) == PENDING
    assert status_of(stub, untouched) == ENQUEUED
    # Again: nothing left in a status it applies to.
    assert final(cancel(ops, name=name, statuses=[ENQUEUED])) == (0, 0)
    assert final(cancel(ops, name=name)) == (1, 1)
    assert status_of(stub, running) == CANCELLED


def test_resume_by_filter(stub: Stub, ops: Ops) -> None:
    name, queue = f"resume-{tag()}", f"q-{tag()}"
    ids = [enqueue(stub, name, queue) for _ in range(3)]
    assert final(cancel(ops, name=name)) == (3, 3)
    assert final(resume(ops, name=name, queue_name=queue, dry_run=True)) == (3, 0)
    assert final(resume(ops, name=name, queue_name=queue)) == (3, 3)
    assert all(status_of(stub, w) == ENQUEUED for w in ids)
    assert final(resume(ops, name=name)) == (0, 0)


def test_resume_skips_a_workflow_whose_deduplication_id_is_held_again(stub: Stub, ops: Ops) -> None:
    name, queue = f"dedup-{tag()}", f"q-{tag()}"
    first = enqueue(stub, name, queue, deduplication_id="order-1")
    twin = enqueue(stub, name, queue, deduplication_id="order-2")
    plain = enqueue(stub, name, queue)
    assert final(cancel(ops, name=name)) == (3, 3)
    holder = enqueue(stub, name, queue, deduplication_id="order-1")  # takes it again

    # As ResumeWorkflow would refuse `first` (QUEUE_DEDUPLICATED): matched, not changed.
    assert final(resume(ops, name=name)) == (3, 2)
    assert status_of(stub, first) == CANCELLED
    assert status_of(stub, twin) == ENQUEUED and status_of(stub, plain) == ENQUEUED
    assert status_of(stub, holder) == ENQUEUED


def test_progress_comes_after_each_batch_of_500(database_url: str, ops: Ops) -> None:
    name = f"batches-{tag()}"
    insert_enqueued(database_url, name, 1234)
    progress = cancel(ops, name=name)
    assert [(p.matched, p.changed, p.done) for p in progress] == [
        (500, 500, False),
        (1000, 1000, False),
        (1234, 1234, False),
        (1234, 1234, True),
    ]
    assert statuses(database_url, name) == {"CANCELLED": 1234}
    assert final(resume(ops, name=name)) == (1234, 1234)
    assert statuses(database_url, name) == {"ENQUEUED": 1234}


def test_an_empty_filter_needs_match_all(stub: Stub, ops: Ops) -> None:
    error = rpc_error(lambda: cancel(ops))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == "match_all"
    error = rpc_error(lambda: resume(ops, dry_run=True))
    assert error_info(error).metadata["field"] == "match_all"

    workflow_id = enqueue(stub, f"all-{tag()}", f"q-{tag()}")
    matched, changed = final(cancel(ops, match_all=True, dry_run=True))
    assert matched >= 1 and changed == 0
    assert status_of(stub, workflow_id) == ENQUEUED


def test_a_filter_matching_nothing_is_done_at_once(ops: Ops) -> None:
    progress = cancel(ops, name=f"nothing-{tag()}")
    assert [(p.matched, p.changed, p.done) for p in progress] == [(0, 0, True)]
    assert final(resume(ops, name=f"nothing-{tag()}")) == (0, 0)


def test_attributes_filter(stub: Stub, ops: Ops) -> None:
    name, queue = f"attrs-{tag()}", f"q-{tag()}"
    acme = enqueue(stub, name, queue, attributes={"tenant": "acme"})
    other = enqueue(stub, name, queue, attributes={"tenant": "other"})
    assert final(cancel(ops, name=name, attributes={"tenant": "acme"})) == (1, 1)
    assert status_of(stub, acme) == CANCELLED and status_of(stub, other) == ENQUEUED


# --- concurrency and cancellation ----------------------------------------------------------


def test_two_coordinators_cancel_the_same_set_each_workflow_once(
    database_url: str, ops: Ops, other_coordinator: Coordinator
) -> None:
    name = f"race-{tag()}"
    count = 3000
    insert_enqueued(database_url, name, count)
    other = Ops(other_coordinator.channel)
    barrier = threading.Barrier(2)

    def run(stub: Ops) -> tuple[int, int]:
        barrier.wait()
        return final(cancel(stub, name=name))

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, [ops, other]))
    assert sum(changed for _, changed in results) == count
    assert all(matched <= count for matched, _ in results)
    assert statuses(database_url, name) == {"CANCELLED": count}


def test_a_cancelled_call_stops_after_the_batch_under_way(database_url: str, ops: Ops) -> None:
    name = f"stop-{tag()}"
    count = 20_000
    insert_enqueued(database_url, name, count)
    request = opb.CancelWorkflowsRequest(filter=pb.ListWorkflowsRequest(name=name))
    call = ops.CancelWorkflows(request, timeout=60)
    first = next(call).progress
    assert (first.matched, first.changed) == (500, 500)
    call.cancel()

    def settled() -> int | None:
        before = statuses(database_url, name).get("CANCELLED", 0)
        time.sleep(0.5)
        return before if statuses(database_url, name).get("CANCELLED", 0) == before else None

    cancelled = eventually(settled)
    # Whole batches only (each commits or not at all), and it stopped well before the end.
    assert cancelled % 500 == 0 and 500 <= cancelled < count


# --- a worker stops at its next step ---------------------------------------------------------

_steps_done: list[str] = []
_release = threading.Event()


@durable.step
def bulk_tick(n: int) -> int:
    _steps_done.append(durable.current_workflow_id() or "")
    _release.wait(10)
    return n


@durable.workflow(name="bulk.looping")
def looping() -> int:
    total = 0
    for n in range(50):
        total += bulk_tick(n)
    return total


def test_running_workflows_stop_at_their_next_step_after_a_bulk_cancel(
    sdk: None, ops: Ops, stub: Stub
) -> None:
    worker = durable.Worker([looping])
    worker.start()
    try:
        # By name: created ENQUEUED, run by the worker.
        handles = [durable.start_workflow("bulk.looping") for _ in range(2)]
        ids = {h.workflow_id for h in handles}
        eventually(lambda: ids <= set(_steps_done) or None)

        assert final(cancel(ops, name="bulk.looping", statuses=[PENDING])) == (2, 2)
        ran = len(_steps_done)
        _release.set()
        for handle in handles:
            with pytest.raises(durable.WorkflowCancelledError):
                handle.result(timeout=10)
        time.sleep(0.5)
        # Each was in one step when cancelled: that step ends, no step after it starts.
        assert len(_steps_done) == ran
        assert all(status_of(stub, w) == CANCELLED for w in ids)
    finally:
        worker.stop()


# --- queue pause --------------------------------------------------------------------------


def heartbeat(stub: Stub, executor: str, names: list[str], queues: list[str]) -> None:
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor, workflow_names=names, queues=queues, lease=duration(60)
        ),
        timeout=RPC_TIMEOUT,
    )


def poll(stub: Stub, executor: str, wait: float, max_workflows: int = 10) -> list[str]:
    reply = stub.PollWork(
        pb.PollWorkRequest(
            executor_id=executor, max_workflows=max_workflows, timeout=duration(wait)
        ),
        timeout=wait + RPC_TIMEOUT,
    )
    return [w.workflow_id for w in reply.workflows]


def get_queue(stub: Stub, queue: str) -> pb.GetQueueResponse:
    return stub.GetQueue(pb.GetQueueRequest(name=queue), timeout=RPC_TIMEOUT)


# Nothing is dispatched from a paused queue: observed over a poll of this long (a bounded
# window: a claim that were to come later would not be seen).
PAUSED_WINDOW = 1.5


def test_a_paused_queue_dispatches_nothing_new_and_resume_dispatches(stub: Stub, ops: Ops) -> None:
    name, queue = f"paused-{tag()}", f"q-{tag()}"
    executor = new_id("exec")
    heartbeat(stub, executor, [name], [queue])
    running = enqueue(stub, name, queue)
    assert poll(stub, executor, wait=5, max_workflows=1) == [running]

    reply = ops.PauseQueue(opb.PauseQueueRequest(name=queue), timeout=RPC_TIMEOUT)
    assert reply.queue.paused and reply.queue.name == queue
    assert ops.PauseQueue(opb.PauseQueueRequest(name=queue), timeout=RPC_TIMEOUT).queue.paused
    waiting = [enqueue(stub, name, queue) for _ in range(3)]
    assert poll(stub, executor, wait=PAUSED_WINDOW) == []
    shown = get_queue(stub, queue)
    assert shown.queue.paused and shown.total.enqueued == 3 and shown.total.running == 1

    # The running one goes on: its steps and finish are taken.
    stub.RunStep(
        pb.RunStepRequest(workflow_id=running, step_id=1, name="s", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=running, output=payload("ok")), timeout=RPC_TIMEOUT
    )
    # ConfigureQueue keeps the pause.
    configured = stub.ConfigureQueue(
        pb.ConfigureQueueRequest(queue=pb.QueueConfig(name=queue, concurrency=5)),
        timeout=RPC_TIMEOUT,
    ).queue
    assert configured.paused and configured.concurrency == 5

    # A parked poll is woken by the resume.
    with ThreadPoolExecutor(1) as pool:
        parked = pool.submit(poll, stub, executor, 20)
        time.sleep(0.5)
        resumed = ops.ResumeQueue(opb.ResumeQueueRequest(name=queue), timeout=RPC_TIMEOUT)
        assert not resumed.queue.paused and resumed.queue.concurrency == 5
        started = time.monotonic()
        claimed = parked.result(timeout=RPC_TIMEOUT)
        assert time.monotonic() - started < 5
    claimed += poll(stub, executor, wait=1)
    assert sorted(claimed) == sorted(waiting)
    assert not get_queue(stub, queue).queue.paused


def test_pausing_a_queue_never_configured_and_resuming_one_never_paused(ops: Ops) -> None:
    queue = f"q-{tag()}"
    assert not ops.ResumeQueue(opb.ResumeQueueRequest(name=queue), timeout=RPC_TIMEOUT).queue.paused
    paused = ops.PauseQueue(opb.PauseQueueRequest(name=queue), timeout=RPC_TIMEOUT).queue
    assert paused.paused and paused.concurrency == 0 and paused.rate_limit == 0


def test_a_pause_survives_a_coordinator_restart(database_url: str) -> None:
    name, queue = f"restart-{tag()}", f"q-{tag()}"
    executor = new_id("exec")
    with running_coordinator(database_url) as first:
        Ops(first.channel).PauseQueue(opb.PauseQueueRequest(name=queue), timeout=RPC_TIMEOUT)
        waiting = enqueue(first.stub, name, queue)
    with running_coordinator(database_url) as second:
        heartbeat(second.stub, executor, [name], [queue])
        assert get_queue(second.stub, queue).queue.paused
        assert poll(second.stub, executor, wait=PAUSED_WINDOW) == []
        Ops(second.channel).ResumeQueue(opb.ResumeQueueRequest(name=queue), timeout=RPC_TIMEOUT)
        assert poll(second.stub, executor, wait=5) == [waiting]


# --- the SDK, both faces ----------------------------------------------------------------------


def test_sdk_cancel_and_resume_workflows_with_progress(
    sdk: None, database_url: str, stub: Stub
) -> None:
    name = f"sdk-{tag()}"
    insert_enqueued(database_url, name, 700)
    counted = durable.cancel_workflows(name=name, status="ENQUEUED", dry_run=True)
    assert counted == durable.BulkResult(matched=700, changed=0, dry_run=True)

    seen: list[durable.BulkProgress] = []
    result = durable.cancel_workflows(name=name, on_progress=seen.append)
    assert result == durable.BulkResult(700, 700, dry_run=False)
    assert seen == [
        durable.BulkProgress(500, 500, False),
        durable.BulkProgress(700, 700, False),
        durable.BulkProgress(700, 700, True),
    ]
    assert durable.resume_workflows(name=name, status=["CANCELLED"]).changed == 700
    assert statuses(database_url, name) == {"ENQUEUED": 700}

    with pytest.raises(durable.InvalidRequestError, match="match_all"):
        durable.cancel_workflows()
    with pytest.raises(ValueError):
        durable.cancel_workflows(status="SLEEPING")


def test_sdk_async_face(coordinator: Coordinator, database_url: str) -> None:
    import asyncio

    import durable.aio

    name, queue = f"aio-{tag()}", f"q-{tag()}"
    insert_enqueued(database_url, name, 3, queue=queue)

    async def main() -> None:
        async with durable.aio.AsyncClient(coordinator.address) as client:
            seen: list[durable.BulkProgress] = []

            async def record(progress: durable.BulkProgress) -> None:
                seen.append(progress)

            dry = await durable.aio.cancel_workflows(name=name, dry_run=True, client=client)
            assert dry == durable.BulkResult(3, 0, True)
            done = await durable.aio.cancel_workflows(
                queue_name=queue, on_progress=record, client=client
            )
            assert done == durable.BulkResult(3, 3, False) and seen[-1].done
            assert (await durable.aio.resume_workflows(name=name, client=client)).changed == 3

            await durable.aio.pause_queue(queue, client=client)
            assert (await durable.aio.get_queue(queue, client=client)).paused
            await durable.aio.resume_queue(durable.Queue(queue), client=client)
            assert not (await durable.aio.get_queue(queue, client=client)).paused

    asyncio.run(main())


def test_sdk_pause_and_resume_a_queue(sdk: None) -> None:
    queue = durable.Queue(f"q-{tag()}", concurrency=3)
    assert durable.get_queue(queue).paused is False
    durable.pause_queue(queue.name)
    info = durable.get_queue(queue)
    assert info.paused and info.concurrency is None  # paused before it was configured
    queue.configure()  # keeps the pause
    assert durable.get_queue(queue).paused and durable.get_queue(queue).concurrency == 3
    queue.resume()
    assert not durable.get_queue(queue).paused
    queue.pause()
    assert durable.get_queue(queue.name).paused
    durable.resume_queue(queue)
    assert not durable.get_queue(queue).paused
