"""Checking the database after the faults: every workflow's result, its step records and
event history, and how often each step really ran (the side_effects table).

Read straight from Postgres with set-based queries, so a thousand workflows check in
well under a second, and nothing the coordinator says is taken on trust.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from tests.reliability.flow import SIDE_EFFECTS_DDL, expected_result
from tests.support import eventually

# How many mismatches a failure message shows.
SHOWN = 10


@dataclass
class Verdict:
    workflows: int = 0
    records_checked: int = 0  # step records, event history rows, side-effect rows
    lost: int = 0  # an expected record (result, step, event version, step run) is missing
    doubled: int = 0  # a step ran again after it was recorded, or a record is extra
    reruns: int = 0  # a step that a killed process was running ran again (allowed)
    wrong: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.wrong.append(text)

    def assert_clean(self) -> None:
        shown = "\n".join(self.wrong[:SHOWN])
        assert not self.wrong, f"{len(self.wrong)} problems, first ones:\n{shown}"
        assert self.lost == 0 and self.doubled == 0, self


def create_side_effects_table(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SIDE_EFFECTS_DDL.encode())


def verify(
    database_url: str,
    prefix: str,
    numbers: Collection[int],
    steps: int,
    killed: Collection[str] = (),
) -> Verdict:
    """Check workflows PREFIX-n for n in `numbers`, each of `steps` steps. `killed`: the
    processes SIGKILLed meanwhile; only a step one of them was running may run twice."""
    verdict = Verdict(workflows=len(numbers))
    expected = {f"{prefix}-{n}": n for n in numbers}
    pattern = f"{prefix}-%"
    with psycopg.connect(database_url) as conn:
        _check_results(conn, pattern, expected, steps, verdict)
        _check_steps(conn, pattern, expected, steps, verdict)
        _check_events(conn, pattern, expected, steps, verdict)
        _check_runs(conn, pattern, expected, steps, set(killed), verdict)
    return verdict


def _json(data: bytes | None) -> Any:
    return None if data is None else json.loads(bytes(data))


def _check_results(
    conn: psycopg.Connection[Any], pattern: str, expected: dict[str, int], steps: int, v: Verdict
) -> None:
    rows = conn.execute(
        "SELECT workflow_id, status, output_data FROM durable.workflows WHERE workflow_id LIKE %s",
        (pattern,),
    ).fetchall()
    found = {wid: (status, _json(data)) for wid, status, data in rows}
    for wid, n in expected.items():
        if wid not in found:
            v.lost += 1
            v.problem(f"{wid}: no workflow record")
        elif found[wid] != ("SUCCESS", expected_result(n, steps)):
            v.problem(f"{wid}: {found[wid]}, expected SUCCESS {expected_result(n, steps)}")


def _check_steps(
    conn: psycopg.Connection[Any], pattern: str, expected: dict[str, int], steps: int, v: Verdict
) -> None:
    """Step j is step record 2j-1 (output n*j), its SetEvent is record 2j: once each."""
    rows = conn.execute(
        "SELECT workflow_id, step_id, kind, output_data FROM durable.steps"
        " WHERE workflow_id LIKE %s",
        (pattern,),
    ).fetchall()
    found: dict[str, dict[int, tuple[str, Any]]] = defaultdict(dict)
    for wid, step_id, kind, data in rows:
        v.records_checked += 1
        if step_id in found[wid]:
            v.doubled += 1
            v.problem(f"{wid}: step record {step_id} twice")
        found[wid][step_id] = (kind, _json(data))
    for wid, n in expected.items():
        want: dict[int, tuple[str, Any]] = {}
        for j in range(1, steps + 1):
            want[2 * j - 1] = ("STEP", n * j)
            want[2 * j] = ("SET_EVENT", None)
        got = found.get(wid, {})
        for step_id, record in want.items():
            if step_id not in got:
                v.lost += 1
                v.problem(f"{wid}: step record {step_id} missing")
            elif got[step_id] != record:
                v.problem(f"{wid}: step record {step_id} is {got[step_id]}, expected {record}")
        for step_id in got.keys() - want.keys():
            v.doubled += 1
            v.problem(f"{wid}: unexpected step record {step_id}")


def _check_events(
    conn: psycopg.Connection[Any], pattern: str, expected: dict[str, int], steps: int, v: Verdict
) -> None:
    """ "progress" history: versions 1..steps, version j = value j set by record 2j; the
    latest value is the last one."""
    rows = conn.execute(
        "SELECT workflow_id, key, version, step_id, data FROM durable.event_history"
        " WHERE workflow_id LIKE %s",
        (pattern,),
    ).fetchall()
    history: dict[str, dict[int, tuple[str, int, Any]]] = defaultdict(dict)
    for wid, key, version, step_id, data in rows:
        v.records_checked += 1
        history[wid][version] = (key, step_id, _json(data))
    latest = dict(
        conn.execute(
            "SELECT workflow_id, version FROM durable.events"
            " WHERE workflow_id LIKE %s AND key = 'progress'",
            (pattern,),
        ).fetchall()
    )
    for wid in expected:
        got = history.get(wid, {})
        for j in range(1, steps + 1):
            if j not in got:
                v.lost += 1
                v.problem(f"{wid}: event version {j} missing")
            elif got[j] != ("progress", 2 * j, j):
                v.problem(f"{wid}: event version {j} is {got[j]}")
        for version in got.keys() - set(range(1, steps + 1)):
            v.doubled += 1
            v.problem(f"{wid}: unexpected event version {version}")
        if latest.get(wid) != steps:
            v.problem(f"{wid}: latest progress version {latest.get(wid)}, expected {steps}")


def _check_runs(
    conn: psycopg.Connection[Any],
    pattern: str,
    expected: dict[str, int],
    steps: int,
    killed: set[str],
    v: Verdict,
) -> None:
    """Every step ran at least once; none ran after its outcome was recorded; a step ran
    more than once only when a killed process was running it (its outcome unrecorded)."""
    rows = conn.execute(
        "SELECT e.workflow_id, e.step, e.process, e.at, s.recorded_at FROM side_effects e"
        " LEFT JOIN durable.steps s"
        "   ON s.workflow_id = e.workflow_id AND s.step_id = 2 * e.step - 1"
        " WHERE e.workflow_id LIKE %s ORDER BY e.at",
        (pattern,),
    ).fetchall()
    runs: dict[tuple[str, int], list[tuple[str, datetime]]] = defaultdict(list)
    for wid, step, process, at, recorded_at in rows:
        v.records_checked += 1
        runs[(wid, step)].append((process, at))
        if recorded_at is not None and at > recorded_at:
            v.doubled += 1
            v.problem(f"{wid}: step {step} ran at {at}, after it was recorded at {recorded_at}")
    for wid in expected:
        for j in range(1, steps + 1):
            done = runs.get((wid, j), [])
            if not done:
                v.lost += 1
                v.problem(f"{wid}: step {j} never ran")
            for process, _ in done[:-1]:  # every run but the last must have been cut short
                if process in killed:
                    v.reruns += 1
                else:
                    v.doubled += 1
                    v.problem(f"{wid}: step {j} ran again after a run by live {process}")


def check_watches(watches: dict[str, dict[str, Any]], steps: int) -> int:
    """Each watch of "progress" saw a gapless, increasing run of values ending at the final
    one (it may begin late: a watcher starts at the value current when it connects).
    Returns how many values the watchers received."""
    received = 0
    for wid, watch in watches.items():
        values = watch["values"]
        assert "error" not in watch, f"watch of {wid} failed: {watch['error']} after {values}"
        assert values, f"watch of {wid} saw nothing"
        assert values == list(range(values[0], steps + 1)), f"watch of {wid} saw {values}"
        received += len(values)
    return received


def recorded_steps(conn: psycopg.Connection[Any], prefix: str) -> int:
    """Step outcomes recorded so far for workflows PREFIX-*: the suite's clock for "when"
    to inject a fault, so kill moments follow progress, not wall time."""
    row = conn.execute(
        "SELECT count(*) FROM durable.steps WHERE workflow_id LIKE %s AND kind = 'STEP'",
        (f"{prefix}-%",),
    ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


def wait_for_progress(
    database_url: str,
    prefix: str,
    point: int,
    guard: Callable[[], None] = lambda: None,
    timeout: float = 120,
) -> None:
    """Wait until `point` step outcomes of workflows PREFIX-* are recorded. `guard` raises
    when waiting is pointless (the processes doing the work have ended)."""

    def reached() -> bool:
        # Progress first: work that outran this poll (e.g. while a killed coordinator was
        # being restarted) has reached the point even if its processes have ended since.
        if recorded_steps(conn, prefix) >= point:
            return True
        guard()
        return False

    with psycopg.connect(database_url, autocommit=True) as conn:
        eventually(reached, timeout=timeout, interval=0.05)


def kill_points(rng: Any, total: int, kills: int) -> list[int]:
    """`kills` distinct progress points (recorded steps) between 10% and 85% of `total`."""
    low, high = max(1, total // 10), max(total // 10 + kills + 1, total * 85 // 100)
    return sorted(rng.sample(range(low, high), kills))
