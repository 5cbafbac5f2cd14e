"""Workers as real processes: a killed worker's workflow is finished by another, a restarted
worker resumes its own work at once, a zombie is fenced off, timeouts and cancellation stop
a run at its next step, a resumed or forked workflow is run by a worker, and a workflow
that keeps killing its workers goes to dead letter.

Each worker is a `python -m tests.worker_process` process; its steps log every side effect
(fsynced) to a file the test reads, so "ran once" and "did not run again" are counted, not
assumed.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, eventually, new_id, running_coordinator
from tests.worker_harness import Workers, workers_for

# Short leases keep the tests quick; recovery comes within about lease + 1 s.
LEASE = 2.0
ALL_STEPS = Counter({f"step-{n}": 1 for n in range(1, 6)})


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


@pytest.fixture
def workers(coordinator: Coordinator, tmp_path: Path) -> Iterator[Workers]:
    with workers_for(coordinator.address, tmp_path) as pool:
        yield pool


def result(client: durable.Client, workflow_id: str, timeout: float = 30.0) -> Any:
    return durable.retrieve_workflow(workflow_id, client=client).result(timeout=timeout)


def stopped_running(workflow_id: str, error: type[Exception]) -> Callable[[str], bool]:
    """Whether a worker's log says its run of the workflow stopped with `error`."""
    return lambda log: f"workflow {workflow_id} stopped running here ({error.__name__}" in log


def test_a_killed_workers_workflow_is_finished_by_another_worker(
    workers: Workers, client: durable.Client, record_property: Callable[[str, object], None]
) -> None:
    first = workers.spawn("first", lease=LEASE, hold_at=3)
    second = workers.spawn("second", lease=LEASE)
    first_session = first.wait_ready()
    second_session = second.wait_ready()
    workflow_id = new_id("killed")
    first.start("pipeline", workflow_id)
    effects = workers.effects
    eventually(lambda: effects.counts(workflow_id)["step-3"] == 1, timeout=20)
    assert client.get_workflow(workflow_id).executor_id == first_session

    killed_at = time.time()
    first.kill()
    assert result(client, workflow_id) == ["1:first", "2:first", "3:second", "4:second", "5:second"]

    resumed = effects.by("second", workflow_id)[0]
    kill_to_resume = resumed.time - killed_at
    print(f"\nkill -> successor's first side effect: {kill_to_resume:.2f}s (lease {LEASE:g}s)")
    record_property("kill_to_resume_seconds", round(kill_to_resume, 3))
    assert resumed.label == "step-3"  # the step the kill interrupted; 1 and 2 were recorded
    assert kill_to_resume < LEASE + 3
    assert effects.counts(workflow_id) == ALL_STEPS + Counter({"step-3": 1})
    recorded = client.get_workflow(workflow_id)
    assert recorded.executor_id == second_session
    assert recorded.recovery_attempts == 1


def test_a_restarted_worker_resumes_its_own_work_without_waiting_for_its_lease(
    workers: Workers, client: durable.Client
) -> None:
    long_lease = 60.0
    before = workers.spawn("steady", lease=long_lease, hold_at=3)
    before.wait_ready()
    workflow_id = new_id("restarted")
    before.start("pipeline", workflow_id)
    effects = workers.effects
    eventually(lambda: effects.counts(workflow_id)["step-3"] == 1, timeout=20)
    before.kill()

    restarted_at = time.time()
    after = workers.spawn("steady", lease=long_lease)
    assert result(client, workflow_id) == [f"{n}:steady" for n in range(1, 6)]
    second_run = [e for e in effects.all(workflow_id) if e.label == "step-3"][1]
    # Process start-up included, and far inside the old session's 60 s lease.
    assert second_run.time - restarted_at < 15
    assert effects.counts(workflow_id) == ALL_STEPS + Counter({"step-3": 1})
    assert client.get_workflow(workflow_id).executor_id == after.wait_ready()


def test_a_zombie_worker_is_fenced_off_once_another_worker_took_over(
    workers: Workers, client: durable.Client
) -> None:
    zombie = workers.spawn("zombie", lease=LEASE, hold_at=3)
    successor = workers.spawn("successor", lease=LEASE)
    zombie.wait_ready()
    successor_session = successor.wait_ready()
    workflow_id = new_id("zombie")
    zombie.start("pipeline", workflow_id)
    effects = workers.effects
    eventually(lambda: effects.counts(workflow_id)["step-3"] == 1, timeout=20)

    # Frozen mid-step for longer than its lease: the successor takes over and finishes.
    zombie.signal(signal.SIGSTOP)
    expected = ["1:zombie", "2:zombie", "3:successor", "4:successor", "5:successor"]
    assert result(client, workflow_id) == expected

    # Thawed, the zombie completes step 3; recording it is refused and its run stops.
    effects.release()
    zombie.signal(signal.SIGCONT)
    lost = stopped_running(workflow_id, durable.WorkflowOwnershipLostError)
    eventually(lambda: lost(zombie.stderr()), timeout=15)
    assert zombie.process.poll() is None  # the worker goes on; only that run stopped

    assert effects.counts(workflow_id) == ALL_STEPS + Counter({"step-3": 1})
    recorded = client.get_workflow(workflow_id)
    assert recorded.status == pb.WORKFLOW_STATUS_SUCCESS
    assert recorded.executor_id == successor_session
    steps = client.list_steps(workflow_id).steps
    assert [s.step_id for s in steps] == list(range(1, 11))  # 5 steps, 5 events, once each
    work = [s for s in steps if s.kind == pb.STEP_KIND_STEP]
    assert [s.output.data.decode().strip('"') for s in work] == expected


def test_a_workflow_past_its_timeout_is_cancelled_and_stops_at_its_next_step(
    workers: Workers, client: durable.Client
) -> None:
    worker = workers.spawn("timer", lease=LEASE, hold_at=1)
    worker.wait_ready()
    workflow_id = new_id("timeout")
    worker.start("timed", workflow_id)  # @durable.workflow(timeout=1.0)
    effects = workers.effects
    eventually(lambda: effects.counts(workflow_id)["step-1"] == 1, timeout=20)
    recorded = client.get_workflow(workflow_id)
    timeout = (recorded.deadline.ToNanoseconds() - recorded.create_time.ToNanoseconds()) / 1e9
    assert timeout == pytest.approx(1.0, abs=0.01)

    # Step 1 is still blocked when the deadline passes.
    eventually(
        lambda: client.get_workflow(workflow_id).status == pb.WORKFLOW_STATUS_CANCELLED,
        timeout=10,
    )
    effects.release()
    cancelled = stopped_running(workflow_id, durable.WorkflowCancelledError)
    eventually(lambda: cancelled(worker.stderr()), timeout=15)
    assert effects.counts(workflow_id) == Counter({"step-1": 1})  # step 2 never ran
    with pytest.raises(durable.WorkflowCancelledError):
        result(client, workflow_id, timeout=5)
    assert client.list_steps(workflow_id).steps == []  # step 1's outcome was not recorded


def test_a_cancelled_workflow_stops_and_a_resumed_one_goes_on_from_its_records(
    workers: Workers, client: durable.Client
) -> None:
    worker = workers.spawn("canceller", lease=LEASE, hold_at=2)
    worker.wait_ready()
    workflow_id = new_id("cancel")
    worker.start("pipeline", workflow_id)
    effects = workers.effects
    eventually(lambda: effects.counts(workflow_id)["step-2"] == 1, timeout=20)

    assert client.cancel_workflow(workflow_id).status == pb.WORKFLOW_STATUS_CANCELLED
    effects.release()
    cancelled = stopped_running(workflow_id, durable.WorkflowCancelledError)
    eventually(lambda: cancelled(worker.stderr()), timeout=15)
    assert effects.counts(workflow_id) == Counter({"step-1": 1, "step-2": 1})
    with pytest.raises(durable.WorkflowCancelledError):
        result(client, workflow_id, timeout=5)

    assert client.resume_workflow(workflow_id).status == pb.WORKFLOW_STATUS_ENQUEUED
    assert result(client, workflow_id) == [f"{n}:canceller" for n in range(1, 6)]
    # Step 1 was recorded before the cancel; step 2's outcome came too late to count.
    assert effects.counts(workflow_id) == ALL_STEPS + Counter({"step-2": 1})


def test_a_fork_runs_only_the_steps_from_where_it_forked(
    workers: Workers, client: durable.Client
) -> None:
    worker = workers.spawn("forker", lease=LEASE)
    worker.wait_ready()
    workflow_id = new_id("original")
    worker.start("pipeline", workflow_id)
    assert result(client, workflow_id) == [f"{n}:forker" for n in range(1, 6)]

    # Steps and events share one sequence: work(3) is step 5.
    fork = client.fork_workflow(workflow_id, start_step_id=5)
    assert fork.workflow_id != workflow_id and fork.forked_from == workflow_id
    assert result(client, fork.workflow_id) == [f"{n}:forker" for n in range(1, 6)]
    effects = workers.effects
    assert effects.counts(fork.workflow_id) == Counter({"step-3": 1, "step-4": 1, "step-5": 1})
    assert effects.counts(workflow_id) == ALL_STEPS


def test_a_workflow_that_keeps_killing_its_workers_ends_in_dead_letter(
    database_url: str, tmp_path: Path
) -> None:
    with (
        running_coordinator(database_url, "--max-recovery-attempts", "1") as strict,
        closing(durable.Client(strict.address)) as client,
        workers_for(strict.address, tmp_path) as workers,
    ):
        workflow_id = new_id("poison")
        first = workers.spawn("doomed", lease=LEASE)
        first.wait_ready()
        first.start("poisoned", workflow_id, wait=False)
        # Each worker that runs it dies; its replacement (same name) takes it over at once.
        for victim in (first, workers.spawn("doomed", lease=LEASE)):
            assert victim.process.wait(timeout=30) == -signal.SIGKILL
        last = workers.spawn("doomed", lease=LEASE)
        last.wait_ready()

        with pytest.raises(durable.WorkflowDeadLetterError):
            result(client, workflow_id, timeout=20)
        handle = durable.retrieve_workflow(workflow_id, client=client)
        assert handle.status() is durable.WorkflowStatus.DEAD_LETTER
        assert workers.effects.counts(workflow_id) == Counter({"poison": 2})
        assert last.process.poll() is None
