"""What the workflow change log (migration 0010: a trigger appending every status change to
durable.workflow_changes, with a NOTIFY) costs on the hot path, in one run.

    .venv/bin/python -m bench.watch_trigger [--rounds 3] [--workflows 300]

Postgres: DATABASE_URL if set, else an embedded one. One coordinator on a fresh database;
rounds alternate the triggers enabled and disabled (ALTER TABLE ... DISABLE TRIGGER), each
measuring start→result latency of a one-step workflow (sequential) and the throughput of
concurrent ten-step workflows. Prints medians per mode and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

import durable
from bench.run import one_step, ten_steps
from coordinator.embedded import start_embedded_postgres
from tests.support import create_database, drop_database, running_coordinator

TRIGGERS = ("workflow_created", "workflow_status_changed")


FUNCTION = """CREATE OR REPLACE FUNCTION durable.record_workflow_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO durable.workflow_changes (namespace, workflow_id, status)
    VALUES (NEW.namespace, NEW.workflow_id, NEW.status);
    {notify}
    RETURN NULL;
END
$$"""
NOTIFY = "PERFORM pg_notify('durable_workflow_changes', NEW.namespace);"
MODES = ("log+notify", "log only", "off")


def set_mode(url: str, mode: str) -> None:
    """The triggers as migrated ("log+notify"), without their NOTIFY, or disabled."""
    verb = "DISABLE" if mode == "off" else "ENABLE"
    with psycopg.connect(url, autocommit=True) as conn:
        for name in TRIGGERS:
            conn.execute(f"ALTER TABLE durable.workflows {verb} TRIGGER {name}".encode())
        notify = NOTIFY if mode == "log+notify" else ""
        conn.execute(FUNCTION.format(notify=notify).encode())


def latency(samples: int) -> float:
    """Median seconds from start_workflow to its result, one at a time."""
    taken = []
    for _ in range(samples):
        began = time.perf_counter()
        durable.start_workflow(one_step).result(timeout=10)
        taken.append(time.perf_counter() - began)
    return statistics.median(taken)


def throughput(workflows: int) -> float:
    """Steps per second of `workflows` concurrent ten-step workflows."""
    began = time.perf_counter()
    handles = [durable.start_workflow(ten_steps) for _ in range(workflows)]
    for handle in handles:
        handle.result(timeout=300)
    return workflows * 10 / (time.perf_counter() - began)


def measure(server: str, rounds: int, workflows: int) -> None:
    url = create_database(server)
    try:
        with running_coordinator(url) as coordinator:
            client = durable.configure(coordinator.address)
            latency(20)  # warm-up
            throughput(50)
            found: dict[str, dict[str, list[float]]] = {
                mode: {"latency": [], "throughput": []} for mode in MODES
            }
            for _ in range(rounds):
                for mode in MODES:
                    set_mode(url, mode)
                    found[mode]["latency"].append(latency(200))
                    found[mode]["throughput"].append(throughput(workflows))
            set_mode(url, "log+notify")
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM durable.workflow_changes").fetchone()
            client.close()
        off = found["off"]
        lat_off = statistics.median(off["latency"])
        thr_off = statistics.median(off["throughput"])
        print(f"rounds: {rounds} x (200 sequential one-step, {workflows} concurrent ten-step)")
        for mode in MODES:
            lat = statistics.median(found[mode]["latency"])
            thr = statistics.median(found[mode]["throughput"])
            print(
                f"{mode:11} start->result p50 {lat * 1e3:6.2f} ms (x{lat / lat_off:.3f})"
                f"  steps/s {thr:5.0f} (x{thr / thr_off:.3f})"
                f"  rounds {[round(x * 1e3, 1) for x in found[mode]['latency']]}"
                f" {[round(x) for x in found[mode]['throughput']]}"
            )
        print(f"change rows written: {row[0] if row else 0}")
    finally:
        drop_database(server, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=300)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL")
    if server:
        measure(server, args.rounds, args.workflows)
        return
    with tempfile.TemporaryDirectory(prefix="durable-pg-") as data_dir:
        embedded = start_embedded_postgres(Path(data_dir) / "pgdata", temporary=True)
        try:
            measure(embedded.url, args.rounds, args.workflows)
        finally:
            embedded.cleanup()


if __name__ == "__main__":
    main()
