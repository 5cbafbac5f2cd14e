"""Two coordinators on one database; the one the clients use is SIGKILLed (then restarted,
and the other one is killed next). SDK clients reach both through one channel
("ipv4:A,B", pick_first), so they fail over to the survivor; their `watch_event` streams
resume there with after_version and must still see every value up to the final one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.reliability.checks import (
    check_watches,
    create_side_effects_table,
    kill_points,
    verify,
    wait_for_progress,
)
from tests.reliability.processes import FlowProcess, all_running
from tests.reliability.report import Report
from tests.reliability.scale import SCALE, SEED, TEST_TIMEOUT, rng
from tests.support import Coordinator

PREFIX = "failover"
STEPS = 4
# Between steps: long enough that the flows are still running, their watches open, when a
# kill lands on a loaded machine (the kill follows a poll of the recorded steps).
PAUSE = 0.25


@pytest.fixture
def replicas(database_url: str) -> Iterator[list[Coordinator]]:
    pair = [Coordinator(database_url), Coordinator(database_url)]
    try:
        for replica in pair:
            replica.wait_serving()
        yield pair
    finally:
        for replica in pair:
            replica.stop()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_clients_and_event_watches_fail_over_to_the_surviving_replica(
    replicas: list[Coordinator], database_url: str, report: Report
) -> None:
    create_side_effects_table(database_url)
    count, kills = SCALE.failover_workflows, SCALE.failover_kills
    points = kill_points(rng("replica failover"), count * STEPS, kills)
    print(f"\nseed {SEED}: kill the clients' coordinator at recorded steps {points}")
    # pick_first: the clients use the first address until it fails.
    target = "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)

    started = time.monotonic()
    driver = FlowProcess(
        "drive",
        target,
        database_url,
        PREFIX,
        0,
        count,
        "--steps",
        str(STEPS),
        "--pause",
        str(PAUSE),
        "--threads",
        "16",
        "--watch-every",
        "1",
        name="driver",
    )
    kill_times: list[float] = []
    try:
        for k, point in enumerate(points):
            wait_for_progress(database_url, PREFIX, point, all_running([driver]))
            # The clients are on replica 0 first; after it dies, on replica 1; and so on.
            victim = replicas[k % 2]
            victim.kill()
            kill_times.append(time.time())
            victim.stop()
            # Back on its port before the other one is killed: one replica is always up.
            replicas[k % 2] = Coordinator(database_url, port=victim.port)
            replicas[k % 2].wait_serving()
        outcomes = driver.wait_done(timeout=300)
    finally:
        driver.close()
    elapsed = time.monotonic() - started

    assert not outcomes.errors, dict(list(outcomes.errors.items())[:5])
    verdict = verify(database_url, PREFIX, range(count), STEPS)
    watched = check_watches(outcomes.watches, STEPS)
    spanning = sum(
        1
        for watch in outcomes.watches.values()
        if any(watch["times"][0] < kill < watch["times"][-1] for kill in kill_times)
    )
    report.record(
        "replica failover (two coordinators, one SIGKILLed at a time)",
        workflows=count,
        faults_injected=kills,
        kill_points_recorded_steps=points,
        watches=len(outcomes.watches),
        watches_across_a_kill=spanning,
        watched_values=watched,
        final_values_missed=0,  # check_watches: each watch ended at the final value
        records_checked=verdict.records_checked,
        lost=verdict.lost,
        doubled=verdict.doubled,
        wrong_results=len(verdict.wrong),
        seconds=elapsed,
    )
    verdict.assert_clean()
    assert len(outcomes.watches) == count
    assert spanning > 0, "no watch was open across a kill"
