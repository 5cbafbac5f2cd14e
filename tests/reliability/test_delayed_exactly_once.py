"""Delayed starts fall due exactly once with two coordinators on one database, one of them
SIGKILLed around the due time (issue 20).

Many delayed workflows, half of them on a queue, are all due at the same instant. Two
worker processes serve them, each through its own coordinator; the victim coordinator is
SIGKILLed at a seeded moment close to the due time (when its pollers are waking to claim),
and restarted on the same port a moment later. Then, from the workflows table and the
workers' side-effect log: every workflow SUCCESS, none claimed before its due time, each
dispatched once (every claim in the workers' logs is the first or a recovery the database
counted), and the step's side effect once per workflow, except where a worker lost its
coordinator mid-step and another recovered the workflow (counted and reported).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from durable.v1 import coordinator_pb2 as pb
from tests.queue_harness import QueueWorker
from tests.reliability.report import Report
from tests.reliability.scale import MODE, SEED, TEST_TIMEOUT, rng
from tests.support import RPC_TIMEOUT, Activity, Coordinator, eventually, payload
from tests.worker_harness import SideEffects

WORKFLOWS = 200 if MODE == "full" else 40
# How far ahead they are due: time to start them all and for both workers to be polling.
LEAD_SECONDS = 3.0
SLACK = 60.0


def rows(database_url: str, name: str) -> list[tuple[str, str, int, datetime, str | None]]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            """SELECT workflow_id, status, recovery_attempts, due_at, queue_name
                 FROM durable.workflows WHERE name = %s""",
            (name,),
        ).fetchall()
    return [(str(w), str(s), int(r), d, q) for w, s, r, d, q in found]


CLAIMED = re.compile(r"^(\S+ \S+) \S+ INFO workflow (\S+) \(\S+\) claimed", re.MULTILINE)


def claims(processes: list[QueueWorker]) -> list[tuple[str, float]]:
    """(workflow ID, when) of every claim the workers logged, by their local clock (the
    log's asctime, to the millisecond)."""
    found = []
    for process in processes:
        for match in CLAIMED.finditer(process.stderr()):
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            found.append((match.group(2), when.timestamp()))
    return found


@pytest.mark.timeout(TEST_TIMEOUT)
def test_delayed_workflows_due_at_once_run_exactly_once_across_a_coordinator_sigkill(
    database_url: str, report: Report, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:12]
    name, queue = f"queued.{tag}", f"queue.{tag}"
    effects = SideEffects(tmp_path / "side-effects.log")
    watcher = Activity(database_url)
    victim = Coordinator(database_url)
    survivor = Coordinator(database_url)
    processes: list[QueueWorker] = []
    try:
        victim.wait_serving()
        survivor.wait_serving()
        for coordinator, label in ((victim, "on-victim"), (survivor, "on-survivor")):
            process = QueueWorker(coordinator.address, effects, tag, label, "--step-seconds", "0.2")
            processes.append(process)
        for process in processes:
            process.wait_ready()

        due = watcher.now() + timedelta(seconds=LEAD_SECONDS)
        start_at = Timestamp()
        start_at.FromDatetime(due)
        ids = [f"delayed-{tag}-{i}" for i in range(WORKFLOWS)]
        for i, workflow_id in enumerate(ids):
            survivor.stub.StartWorkflow(
                pb.StartWorkflowRequest(
                    workflow_id=workflow_id,
                    name=name,
                    input=payload({"args": [i], "kwargs": {}}),
                    queue_name=queue if i % 2 else "",
                    start_at=start_at,
                ),
                timeout=RPC_TIMEOUT,
            )
        assert {s for _, s, *_ in rows(database_url, name)} == {"ENQUEUED"}

        # SIGKILL close to the due time (the seed replays the moment).
        offset = rng("delayed exactly once").uniform(-0.05, 0.15)
        time.sleep(max(0.0, (due - watcher.now()).total_seconds() + offset))
        victim.kill()
        killed_at = watcher.now()
        victim.stop()
        time.sleep(1.0)
        victim = Coordinator(database_url, port=victim.port)
        victim.wait_serving()
        restarted_at = watcher.now()

        def all_done() -> bool:
            found = rows(database_url, name)
            return len(found) == WORKFLOWS and all(s == "SUCCESS" for _, s, *_ in found)

        eventually(all_done, timeout=SLACK, interval=0.1)
        logged = claims(processes)
    finally:
        for process in processes:
            process.close()
        victim.stop()
        survivor.stop()
        watcher.close()

    found = rows(database_url, name)
    claimed = Counter(w for w, _ in logged)
    dispatched: dict[str, float] = {}
    for workflow_id, when in sorted(logged, key=lambda c: c[1]):
        dispatched.setdefault(workflow_id, when)
    dispatch_lateness = sorted(when - due.timestamp() for when in dispatched.values())
    recovered = {w: r for w, _, r, _, _ in found if r}
    runs = Counter(e.workflow_id for e in effects.all() if e.label == "q")
    first_effect: dict[str, float] = {}
    for effect in effects.all():
        if effect.label == "q":
            first_effect.setdefault(effect.workflow_id, effect.time)
    early = [w for w, t in first_effect.items() if t < due.timestamp()]
    lateness = sorted(t - due.timestamp() for t in first_effect.values())
    # A claim whose reply was lost is run without a "claimed" line (as stranded work).
    extra_claims = {w: n for w, n in claimed.items() if n > 1 + recovered.get(w, 0)}
    doubled = {w: n for w, n in runs.items() if n > 1}
    by_worker = Counter(e.worker for e in effects.all() if e.label == "q")
    figures = {
        "seed": SEED,
        "coordinators": 2,
        "faults_injected": 1,
        "workflows": WORKFLOWS,
        "queued": sum(q is not None for *_, q in found),
        "kill_offset_after_due_ms": round(offset * 1000, 1),
        "due_time": due.isoformat(),
        "kill_time": killed_at.isoformat(),
        "restart_time": restarted_at.isoformat(),
        "records_checked": len(found),
        "succeeded": sum(s == "SUCCESS" for _, s, *_ in found),
        "lost": WORKFLOWS - len(runs),
        "claimed_before_due": len(early),
        "claims_logged": sum(claimed.values()),
        "claims_beyond_recoveries": len(extra_claims),
        "doubled": len(extra_claims),
        "recovered": len(recovered),
        "side_effects_doubled": len(doubled),
        "side_effects_by_worker": dict(by_worker),
        # The first claims show the wake-up; the later ones wait for the worker's free slots
        # (max_concurrent 16, 0.2 s steps), or for a recovery.
        "first_claim_after_due_ms_min": round(1000 * dispatch_lateness[0], 1),
        "first_claim_after_due_ms_median": round(
            1000 * dispatch_lateness[len(dispatch_lateness) // 2], 1
        ),
        "first_claim_after_due_ms_max": round(1000 * dispatch_lateness[-1], 1),
        "first_effect_after_due_ms_median": round(1000 * lateness[len(lateness) // 2], 1),
        "first_effect_after_due_ms_max": round(1000 * lateness[-1], 1),
    }
    report.record("delayed starts due at once, two coordinators, one SIGKILLed", **figures)
    print("\ndelayed exactly once: " + ", ".join(f"{k}={v}" for k, v in figures.items()))

    assert sorted(w for w, *_ in found) == sorted(ids)
    assert figures["succeeded"] == WORKFLOWS
    assert set(runs) == set(ids), "a workflow never ran"
    assert not early, early
    # Logged claims have millisecond stamps: none is before the due time's millisecond.
    assert dispatch_lateness[0] > -0.001, dispatch_lateness[0]
    # Dispatched once: a second claim of a workflow is only ever a recovery.
    assert not extra_claims, extra_claims
    # A side effect twice only where its worker lost the workflow mid-step.
    assert set(doubled) <= set(recovered), (doubled, recovered)
    assert all(n <= 1 + recovered[w] for w, n in doubled.items())
    assert due.tzinfo is not None and due < datetime.now(timezone.utc)
