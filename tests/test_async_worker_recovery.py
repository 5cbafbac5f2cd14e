"""`durable.aio.Worker` processes (tests/async_worker_process.py): a SIGKILLed worker's
`async def` workflow is finished by another worker, with every step recorded before the
kill left alone and only the step in flight run again; a SIGTERMed worker finishes what it
runs before it exits.

Each step logs its side effect (fsynced) to a file the test reads, so "ran once" and "did
not run again" are counted, not assumed.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.support import Coordinator, LineProcess, eventually, new_id
from tests.worker_harness import SideEffects

pytestmark = pytest.mark.usefixtures("sdk")

# Short leases keep the tests quick; recovery comes within about lease + 1 s.
LEASE = 2.0
WAIT = 30.0
STEPS = 5


class AsyncWorkerProcess(LineProcess):
    """One `python -m tests.async_worker_process` process."""

    def __init__(self, address: str, effects: SideEffects, tag: str, name: str, *args: str) -> None:
        super().__init__(
            name,
            [
                "tests.async_worker_process",
                address,
                str(effects.path),
                tag,
                "--name",
                name,
                "--lease",
                str(LEASE),
                *args,
            ],
            effects.path.with_name(f"{name}.stderr"),
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until the worker is registered; returns its executor ID."""
        return self._line("ready ", timeout).split()[1]


class Spawner:
    """Spawns one test's worker processes, all on its side-effect log and workflow tag."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.address = address
        self.effects = SideEffects(tmp_path / "side-effects.log")
        self.tag = new_id("tag")
        self.processes: list[AsyncWorkerProcess] = []

    def spawn(self, name: str, *args: str) -> AsyncWorkerProcess:
        process = AsyncWorkerProcess(self.address, self.effects, self.tag, name, *args)
        self.processes.append(process)
        return process


@pytest.fixture
def workers(coordinator: Coordinator, tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(coordinator.address, tmp_path)
    yield spawner
    for process in spawner.processes:
        process.close()


def recorded_steps(workflow_id: str) -> list[str]:
    """The outputs of the workflow's recorded steps ("N:WORKER"), in order."""
    return [s.output for s in durable.list_steps(workflow_id) if s.kind == "step"]


def test_a_sigkilled_async_workers_workflow_is_finished_by_another_worker(
    workers: Spawner,
) -> None:
    workflow_id = new_id("async-killed")
    first = workers.spawn("first", "--hold-at", "3", "--start", workflow_id)
    first_session = first.wait_ready()
    effects = workers.effects
    # Steps 1 and 2 are recorded; step 3 is in flight (held) when the process dies.
    eventually(lambda: len(effects.all(workflow_id)) == 3, timeout=WAIT)
    assert durable.get_workflow(workflow_id).executor_id == first_session
    assert recorded_steps(workflow_id) == ["1:first", "2:first"]
    first.kill()

    second = workers.spawn("second")
    second_session = second.wait_ready()
    outcome = durable.retrieve_workflow(workflow_id).result(timeout=WAIT)
    assert outcome == ["1:first", "2:first", "3:second", "4:second", "5:second"]
    # Steps recorded before the kill never ran again; the one in flight ran twice (at least
    # once, recorded once); the rest ran once, on the successor.
    assert [(e.label, e.worker) for e in effects.all(workflow_id)] == [
        ("step-1", "first"),
        ("step-2", "first"),
        ("step-3", "first"),
        ("step-3", "second"),
        ("step-4", "second"),
        ("step-5", "second"),
    ]
    info = durable.get_workflow(workflow_id)
    assert (info.status, info.executor_id) == (durable.WorkflowStatus.SUCCESS, second_session)
    assert info.recovery_attempts == 1
    assert durable.list_events(workflow_id) == {"progress": 100}
    assert Counter(s.kind for s in durable.list_steps(workflow_id)) == {"step": 5, "set_event": 5}


def test_a_worker_killed_at_any_moment_repeats_at_most_the_step_in_flight(
    workers: Spawner,
) -> None:
    workflow_id = new_id("async-killed-anywhere")
    first = workers.spawn("first", "--step-seconds", "0.3", "--start", workflow_id)
    first.wait_ready()
    effects = workers.effects
    eventually(lambda: len(effects.all(workflow_id)) == 2, timeout=WAIT)
    first.kill()  # somewhere in step 2, or just after it
    done_before = len(recorded_steps(workflow_id))  # what the dead worker recorded
    assert done_before in (1, 2)

    workers.spawn("second").wait_ready()
    outcome = durable.retrieve_workflow(workflow_id).result(timeout=WAIT)
    assert outcome[:done_before] == [f"{n}:first" for n in range(1, done_before + 1)]
    assert outcome[done_before:] == [f"{n}:second" for n in range(done_before + 1, STEPS + 1)]
    by_first = Counter(e.label for e in effects.by("first", workflow_id))
    by_second = Counter(e.label for e in effects.by("second", workflow_id))
    # Recorded steps ran once, on the first worker; the successor ran every other step once;
    # only the first unrecorded one can have started on both (at least once, recorded once).
    in_flight = f"step-{done_before + 1}"
    assert by_first - Counter({in_flight: 1}) == {f"step-{n}": 1 for n in range(1, done_before + 1)}
    assert by_second == {f"step-{n}": 1 for n in range(done_before + 1, STEPS + 1)}
    assert durable.get_workflow(workflow_id).status is durable.WorkflowStatus.SUCCESS


def test_a_sigtermed_async_worker_finishes_its_running_workflow_then_exits(
    workers: Spawner,
) -> None:
    queue = new_id("async-sigterm")
    # Five steps of 0.3 s fit in the worker's 5 s shutdown grace.
    worker = workers.spawn("graceful", "--step-seconds", "0.3", "--queue", queue)
    session = worker.wait_ready()
    # Only the name of this stand-in is used: the worker process runs its own workflow.
    stand_in = durable.workflow(name=f"async_pipeline.{workers.tag}")(lambda: None)
    workflow_id = durable.Queue(queue).enqueue(stand_in).workflow_id
    eventually(lambda: len(workers.effects.all(workflow_id)) == 2, timeout=WAIT)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=15) == 0
    assert worker.lines[-1] == "stopped"

    info = durable.get_workflow(workflow_id)
    assert (info.status, info.executor_id) == (durable.WorkflowStatus.SUCCESS, session)
    assert recorded_steps(workflow_id) == [f"{n}:graceful" for n in range(1, STEPS + 1)]
    assert workers.effects.counts(workflow_id) == {f"step-{n}": 1 for n in range(1, STEPS + 1)}
