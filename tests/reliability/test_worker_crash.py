"""Worker processes SIGKILLed mid-workflow (which one and when: seeded). The survivors must
take the dead worker's workflows over within its lease, finish them with the right
results, and never run a step again whose outcome was already recorded: the side_effects
table counts every run, so only the steps the dead worker was running may show twice.

Run once with sync workers (`durable.Worker`, a thread per workflow) and once with async
ones (`durable.aio.Worker`, a task per workflow on one event loop), checked alike.
"""

from __future__ import annotations

import time
from functools import partial

import psycopg
import pytest

from tests.reliability.checks import (
    create_side_effects_table,
    kill_points,
    verify,
    wait_for_progress,
)
from tests.reliability.processes import FACES, FlowProcess, all_running
from tests.reliability.report import Report, for_face
from tests.reliability.scale import SCALE, SEED, TEST_TIMEOUT, rng
from tests.support import Coordinator, eventually

PREFIX = "workers"
STEPS = 4
PAUSE = 0.3  # per step, so the kills land mid-workflow
LEASE = 2.0
# Takeover comes within the lease plus PollWork's 1 s scan for lapsed leases; the rest
# is slack for a busy two-core CI machine.
TAKEOVER_BOUND = LEASE + 4.0


def owned_pending(conn: psycopg.Connection[tuple[int]], executor_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM durable.workflows WHERE executor_id = %s AND status = 'PENDING'",
        (executor_id,),
    ).fetchone()
    assert row is not None
    return row[0]


def taken_over(conn: psycopg.Connection[tuple[int]], executor_id: str) -> bool:
    return owned_pending(conn, executor_id) == 0


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("face", FACES)
def test_survivors_take_over_killed_workers_without_rerunning_recorded_steps(
    coordinator: Coordinator, database_url: str, report: Report, face: str
) -> None:
    create_side_effects_table(database_url)
    count, processes, kills = SCALE.worker_workflows, SCALE.worker_processes, SCALE.worker_kills
    draw = rng(f"worker crash, {face}")
    # Each face its own workflows (and names) in the module's database and coordinator.
    prefix = f"{PREFIX}-{face}"
    points = kill_points(draw, count * STEPS, kills)
    options = ("--steps", str(STEPS), "--pause", str(PAUSE), "--lease", str(LEASE))
    share = count // processes

    def spawn(name: str, first: int, number: int) -> FlowProcess:
        return FlowProcess(
            "work",
            coordinator.address,
            database_url,
            prefix,
            first,
            number,
            *options,
            name=f"{face}-{name}",
            face=face,
        )

    started = time.monotonic()
    workers = [
        spawn(f"worker-{w}", w * share, share if w < processes - 1 else count - w * share)
        for w in range(processes)
    ]
    killed: list[str] = []
    takeovers: list[float] = []
    orphans: list[int] = []
    try:
        sessions = {worker.name: worker.wait_ready() for worker in workers}
        with psycopg.connect(database_url, autocommit=True) as conn:
            for k, point in enumerate(points):
                alive = [w for w in workers if w.name not in killed]
                wait_for_progress(database_url, prefix, point, all_running(alive))
                victim = draw.choice([w for w in alive if owned_pending(conn, sessions[w.name])])
                session = sessions[victim.name]
                orphans.append(owned_pending(conn, session))
                victim.kill()
                down = time.monotonic()
                killed.append(victim.name)
                print(f"\nseed {SEED}: killed {victim.name} ({face}) at {point} recorded steps")
                # A fresh worker joins, so there are always survivors for the next kill.
                workers.append(spawn(f"replacement-{k}", 0, 0))
                eventually(partial(taken_over, conn, session), timeout=60)
                takeovers.append(time.monotonic() - down)
                sessions[workers[-1].name] = workers[-1].wait_ready()
            eventually(
                lambda: all(
                    status == "SUCCESS"
                    for (status,) in conn.execute(
                        "SELECT status FROM durable.workflows WHERE workflow_id LIKE %s",
                        (f"{prefix}-%",),
                    )
                ),
                timeout=120,
                interval=0.2,
            )
    finally:
        for worker in workers:
            worker.close()
    elapsed = time.monotonic() - started

    verdict = verify(database_url, prefix, range(count), STEPS, killed=killed)
    report.record(
        for_face("worker crash (SIGKILL, lease takeover)", face),
        face=face,
        workflows=count,
        worker_processes=processes + kills,
        faults_injected=len(killed),
        kill_points_recorded_steps=points,
        orphaned_workflows=sum(orphans),
        lease_seconds=LEASE,
        max_takeover_seconds=max(takeovers),
        records_checked=verdict.records_checked,
        lost=verdict.lost,
        doubled=verdict.doubled,
        reruns_of_interrupted_steps=verdict.reruns,
        wrong_results=len(verdict.wrong),
        seconds=elapsed,
    )
    verdict.assert_clean()
    assert all(n > 0 for n in orphans), orphans
    assert max(takeovers) < TAKEOVER_BOUND, takeovers
