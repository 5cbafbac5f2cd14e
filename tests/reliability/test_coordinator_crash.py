"""The coordinator SIGKILLed at random moments (seeded) while SDK client processes run
workflows with several steps and events; each time it is restarted on the same port.

Every workflow must end with the right result without being restarted (the clients ride
through on their retries), every step must be recorded exactly once and have run exactly
once, every event history must be gapless, and watchers must see no value lost or out of
order.

Run once with sync clients (a thread per workflow) and once with async ones (`durable.aio`,
a task per workflow on one event loop), checked alike.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.checks import (
    check_watches,
    create_side_effects_table,
    kill_points,
    verify,
    wait_for_progress,
)
from tests.reliability.processes import FACES, FlowProcess, all_running, merge
from tests.reliability.report import Report, for_face
from tests.reliability.scale import SCALE, SEED, TEST_TIMEOUT, rng
from tests.support import Coordinator

PREFIX = "crash"
STEPS = 4
WATCH_EVERY = 10


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("face", FACES)
def test_workflows_ride_through_coordinator_sigkills(
    database_url: str, report: Report, face: str
) -> None:
    create_side_effects_table(database_url)
    count, drivers, kills = SCALE.crash_workflows, SCALE.crash_drivers, SCALE.crash_kills
    points = kill_points(rng(f"coordinator crash, {face}"), count * STEPS, kills)
    print(f"\nseed {SEED}: SIGKILL the coordinator at recorded steps {points} ({face} clients)")
    # Each face its own workflows in the module's database.
    prefix = f"{PREFIX}-{face}"

    started = time.monotonic()
    coordinator = Coordinator(database_url)
    coordinator.wait_serving()
    share = count // drivers
    clients = [
        FlowProcess(
            "drive",
            coordinator.address,
            database_url,
            prefix,
            d * share,
            share if d < drivers - 1 else count - d * share,
            "--steps",
            str(STEPS),
            "--threads",
            "16",
            "--watch-every",
            str(WATCH_EVERY),
            name=f"{face}-driver-{d}",
            face=face,
        )
        for d in range(drivers)
    ]
    outages: list[float] = []
    try:
        for point in points:
            wait_for_progress(database_url, prefix, point, all_running(clients))
            coordinator.kill()
            down = time.monotonic()
            coordinator.stop()
            coordinator = Coordinator(database_url, port=coordinator.port)
            coordinator.wait_serving()
            outages.append(time.monotonic() - down)
        outcomes = merge([client.wait_done(timeout=300) for client in clients])
    finally:
        for client in clients:
            client.close()
        coordinator.stop()
    elapsed = time.monotonic() - started

    assert not outcomes.errors, dict(list(outcomes.errors.items())[:5])
    assert len(outcomes.results) == count
    verdict = verify(database_url, prefix, range(count), STEPS)
    watched = check_watches(outcomes.watches, STEPS)
    report.record(
        for_face("coordinator crash (SIGKILL, restart on the same port)", face),
        face=face,
        workflows=count,
        client_processes=drivers,
        faults_injected=kills,
        kill_points_recorded_steps=points,
        max_outage_seconds=max(outages),
        records_checked=verdict.records_checked,
        lost=verdict.lost,
        doubled=verdict.doubled,
        wrong_results=len(verdict.wrong),
        watches=len(outcomes.watches),
        watched_values=watched,
        seconds=elapsed,
    )
    verdict.assert_clean()
    assert len(outcomes.watches) == count // WATCH_EVERY
