"""What synchronous replication costs per step: one coordinator on a primary with a
streaming standby on localhost (tests/reliability/replication.py, the binaries the pgserver
wheel ships), the same workload with the standby synchronous and asynchronous, alternating
in one run so that host noise favours neither.

    .venv/bin/python -m bench.replication [--rounds 3] [--steps 200] [--json-out PATH]

The primary switches between `synchronous_standby_names = 'standby'` (every commit waits
for the standby to flush it: `synchronous_commit = on`) and `''` (asynchronous) with
ALTER SYSTEM and a reload; the rig checks pg_stat_replication.sync_state each time.
Scenarios: `step_latency` (sequential steps inside one workflow, as in bench.run) and
`throughput` (50 workflows of 10 steps started at once: steps/s). On localhost the
standby's round trip is tens of microseconds; across availability zones add its network
round trip (typically 0.5-2 ms) to every commit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

import durable
from tests.reliability.replication import STANDBY_NAME, ReplicatedPostgres
from tests.support import Coordinator, create_database, eventually

SAMPLES: list[float] = []


@durable.step(name="bench.replication.noop")
def noop(i: int) -> int:
    return i


@durable.workflow(name="bench.replication.sequential")
def sequential(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        noop(i)
        SAMPLES.append(time.perf_counter() - start)


@durable.workflow(name="bench.replication.ten_steps")
def ten_steps() -> int:
    return sum(noop(i) for i in range(10))


def set_mode(rig: ReplicatedPostgres, synchronous: bool) -> None:
    names = STANDBY_NAME if synchronous else ""
    with psycopg.connect(rig.primary.url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'".encode())
        conn.execute("SELECT pg_reload_conf()")
        wanted = "sync" if synchronous else "async"

        def switched() -> bool:
            row = conn.execute(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                (STANDBY_NAME,),
            ).fetchone()
            return row is not None and row[0] == wanted

        eventually(switched, timeout=10, interval=0.05)


def step_latency(steps: int) -> dict[str, float]:
    sequential(20)  # warm-up
    SAMPLES.clear()
    sequential(steps)
    ms = sorted(s * 1000 for s in SAMPLES)
    return {
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
    }


def throughput(workflows: int = 50) -> dict[str, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workflows) as pool:
        handles = list(pool.map(lambda _: durable.start_workflow(ten_steps), range(workflows)))
        for handle in handles:
            handle.result(timeout=60)
    return {"steps_per_s": workflows * 10 / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    rig = ReplicatedPostgres(synchronous=True)
    try:
        coordinator = Coordinator(create_database(rig.primary.url))
        try:
            coordinator.wait_serving()
            durable.configure(coordinator.address)
            rounds: dict[str, list[dict[str, float]]] = {"sync": [], "async": []}
            for r in range(args.rounds):
                # Alternate which mode goes first, so drift favours neither.
                order = ("sync", "async") if r % 2 == 0 else ("async", "sync")
                for mode in order:
                    set_mode(rig, mode == "sync")
                    figures = step_latency(args.steps) | throughput()
                    rounds[mode].append(figures)
                    print(f"round {r + 1} {mode:5}: {figures}", flush=True)
        finally:
            coordinator.stop()
    finally:
        rig.close()

    def median(mode: str, key: str) -> float:
        return statistics.median(f[key] for f in rounds[mode])

    print("\n| scenario | synchronous | asynchronous | sync / async |")
    print("|---|---|---|---|")
    result: dict[str, Any] = {"rounds": rounds}
    for key, unit in (("median_ms", "ms"), ("p99_ms", "ms"), ("steps_per_s", "steps/s")):
        sync, asynchronous = median("sync", key), median("async", key)
        result[key] = {"sync": sync, "async": asynchronous, "ratio": sync / asynchronous}
        ratio = sync / asynchronous
        print(f"| {key} | {sync:.3f} {unit} | {asynchronous:.3f} {unit} | {ratio:.2f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
