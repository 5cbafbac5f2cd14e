"""The coordinator SIGKILLed and restarted on its port while a step runs, with the process
busy meanwhile: in the async face the step blocks the event loop (as CPU-bound or blocking
code in an `async def` step does), so the loop learns of the dead stream only afterwards.
The step's outcome must then be recorded over a new stream and the workflow finish, as
when the coordinator dies between steps (test_coordinator_crash.py).

One crash per workflow, `CYCLES` workflows in a row, run in this test's process (the step
itself kills and restarts the coordinator, so the moment is exact).

On the async face this once failed: a write on the dead Session stream fails in gRPC Core,
grpc.aio then reports the stream's status as INTERNAL "Internal error from Core"
(grpc/grpc#36066), and the SDK passed that on to every waiting call as a non-retryable
error, leaving the workflow PENDING; a stream's INTERNAL is now read as its transport lost
(durable._core.batching.stream_failure) and retried on a new stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

import durable
import durable.aio
from tests.reliability.processes import FACES
from tests.reliability.report import Report, for_face
from tests.reliability.scale import MODE, TEST_TIMEOUT
from tests.support import Coordinator

PREFIX = "mid-step"
# A crash per workflow. Before the fix above, 35-50% of the async face's crashes showed
# the bug, so CI's 12 would miss its return at most once in 170 runs (0.65**12).
CYCLES = 40 if MODE == "full" else 12
# How long the process stays busy after the kill, before the restart (SIGKILL at once).
BUSY_SECONDS = 0.5


class Rig:
    """The coordinator under test, which the crash step replaces with a new process."""

    coordinator: ClassVar[Coordinator | None] = None
    restarts: ClassVar[int] = 0
    outages: ClassVar[list[float]] = []

    @classmethod
    def crash(cls) -> None:
        """SIGKILL the coordinator, stay busy, restart it on its port: all blocking."""
        old = cls.coordinator
        assert old is not None
        down = time.monotonic()
        old.kill()
        old.stop()
        time.sleep(BUSY_SECONDS)
        cls.coordinator = Coordinator(old.database_url, port=old.port)
        cls.coordinator.wait_serving()
        cls.restarts += 1
        cls.outages.append(time.monotonic() - down)


@durable.step
def first(n: int) -> int:
    return n


@durable.step
def crash(n: int) -> int:
    Rig.crash()
    return 10 * n


@durable.workflow(name="reliability.mid_step")
def mid_step(n: int) -> int:
    total = first(n) + crash(n)
    durable.set_event("done", total)
    return total


@durable.step
async def first_async(n: int) -> int:
    return n


@durable.step
async def crash_async(n: int) -> int:
    Rig.crash()  # without awaiting: the event loop is blocked meanwhile
    return 10 * n


@durable.workflow(name="reliability.mid_step_async")
async def mid_step_async(n: int) -> int:
    total = await first_async(n) + await crash_async(n)
    await durable.aio.set_event("done", total)
    return total


def run_sync(prefix: str) -> dict[str, str]:
    """Outcome by workflow ID ("ok", or the error), up to the first failure."""
    assert Rig.coordinator is not None
    client = durable.configure(Rig.coordinator.address)
    outcomes: dict[str, str] = {}
    try:
        for n in range(1, CYCLES + 1):
            workflow = f"{prefix}-{n}"
            try:
                with durable.set_workflow_id(workflow):
                    result = mid_step(n)
                outcomes[workflow] = "ok" if result == 11 * n else f"result {result}"
            except Exception as exc:
                outcomes[workflow] = repr(exc)
            if outcomes[workflow] != "ok":
                break
    finally:
        client.close()
    return outcomes


async def run_async(prefix: str) -> dict[str, str]:
    """As `run_sync`, on this event loop."""
    assert Rig.coordinator is not None
    durable.aio.configure(Rig.coordinator.address)
    outcomes: dict[str, str] = {}
    for n in range(1, CYCLES + 1):
        workflow = f"{prefix}-{n}"
        try:
            with durable.aio.set_workflow_id(workflow):
                result = await mid_step_async(n)
            outcomes[workflow] = "ok" if result == 11 * n else f"result {result}"
        except Exception as exc:
            outcomes[workflow] = repr(exc)
        if outcomes[workflow] != "ok":
            break
    return outcomes


@pytest.fixture
def rig(database_url: str) -> Iterator[type[Rig]]:
    Rig.coordinator = Coordinator(database_url)
    Rig.coordinator.wait_serving()
    Rig.restarts, Rig.outages = 0, []
    try:
        yield Rig
    finally:
        Rig.coordinator.stop()
        Rig.coordinator = None


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("face", FACES)
def test_a_step_that_outlasts_a_coordinator_restart_is_recorded(
    rig: type[Rig], report: Report, face: str
) -> None:
    prefix = f"{PREFIX}-{face}"
    print(f"\n{CYCLES} workflows, the coordinator SIGKILLed during each one's step ({face})")
    started = time.monotonic()
    outcomes = asyncio.run(run_async(prefix)) if face == "async" else run_sync(prefix)
    failed = {workflow: outcome for workflow, outcome in outcomes.items() if outcome != "ok"}
    report.record(
        for_face("coordinator crash mid-step (SIGKILL while the process is busy)", face),
        face=face,
        workflows=len(outcomes),
        faults_injected=rig.restarts,
        max_outage_seconds=max(rig.outages, default=0.0),
        failed_workflows=len(failed),
        first_failure=next(iter(failed.values()), "-"),
        seconds=time.monotonic() - started,
    )
    assert not failed, failed
    assert len(outcomes) == CYCLES
