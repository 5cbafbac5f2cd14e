"""What retention's clean-up costs a running step load, and how fast it deletes.

    .venv/bin/python -m bench.retention [--workflows 100000] [--baseline-seconds 15]
    .venv/bin/python -m bench.retention --quick          # 10,000 workflows, 8 s baseline
    DATABASE_URL=postgresql://... .venv/bin/python -m bench.retention

Postgres: DATABASE_URL if set, else an embedded one (pgserver); a fresh database per run.
One coordinator process (tests.support.Coordinator, --retention-interval 0.2, the default
batch of 500, --retention-pause-factor from --pause-factor) and, in this process, the SDK
running a step load: one workflow after another of 100 sequential no-op steps (as
bench.run's step_latency), each step timed.

1. Seed `--workflows` finished workflows, two hours old, in SQL (the deleting is what is
   measured, not the writing), each with what a small real workflow leaves behind: 3
   steps, 1 failed step attempt, 1 event with its history row and 1 message (8 rows with
   the workflow row, plus the change-log row if the schema has one); then VACUUM ANALYZE.
2. Baseline: the step load alone for `--baseline-seconds`, the expired workflows present
   but no retention policy.
3. Clean-up: SetRetention(1 h); every expired workflow is deleted by the loop while the
   step load goes on, timed until /metrics has counted them all.
4. After: the step load alone again, as long as the baseline (the tables now hold only the
   load's own workflows).

Prints step latency p50/p99 per phase, the clean-up/baseline ratios, and the rows (and
workflows) deleted per second of the clean-up; the raw figures go to
bench/results/retention-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import durable
from coordinator.embedded import start_embedded_postgres
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    create_database,
    drop_database,
    duration,
    free_port,
    scrape_metrics,
)

RESULTS = Path(__file__).parent / "results"

SEED = [
    """INSERT INTO durable.workflows (workflow_id, namespace, name, status, output_encoding,
                                      output_data, created_at, updated_at)
       SELECT 'old-' || i, 'default', 'bench.old', 'SUCCESS', 'json', '"done"',
              now() - interval '3 hours', now() - interval '2 hours'
         FROM generate_series(1, %(n)s) i""",
    """INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                                  output_encoding, output_data)
       SELECT 'old-' || i, 'default', s, 'bench.noop', 'STEP', 'json', '1'
         FROM generate_series(1, %(n)s) i, generate_series(1, 3) s""",
    """INSERT INTO durable.step_attempts (workflow_id, namespace, step_id, attempt, name,
                                          error_type, error_message, error_details, ended_at)
       SELECT 'old-' || i, 'default', 1, 1, 'bench.noop', 'E', 'failed once', '', now()
         FROM generate_series(1, %(n)s) i""",
    """INSERT INTO durable.events (workflow_id, namespace, key, version, encoding, data, set_at)
       SELECT 'old-' || i, 'default', 'progress', 1, 'json', '100', now()
         FROM generate_series(1, %(n)s) i""",
    """INSERT INTO durable.event_history (workflow_id, namespace, key, version, step_id,
                                          encoding, data, set_at)
       SELECT 'old-' || i, 'default', 'progress', 1, 2, 'json', '100', now()
         FROM generate_series(1, %(n)s) i""",
    """INSERT INTO durable.messages (destination_id, namespace, topic, encoding, data,
                                     consumed_step_id)
       SELECT 'old-' || i, 'default', '', 'json', '"hello"', 3
         FROM generate_series(1, %(n)s) i""",
]

SAMPLES: list[float] = []
_SAMPLES_LOCK = threading.Lock()


@durable.step(name="bench.retention.noop")
def noop(i: int) -> int:
    return i


@durable.workflow(name="bench.retention.sequential")
def sequential(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        noop(i)
        elapsed = time.perf_counter() - start
        with _SAMPLES_LOCK:
            SAMPLES.append(elapsed)


class Load:
    """The step load on a thread of its own: workflows of 100 steps, one after another."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                sequential(100)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError("the step load failed") from self.error


def take_samples() -> list[float]:
    with _SAMPLES_LOCK:
        taken = list(SAMPLES)
        SAMPLES.clear()
    return taken


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "max_ms": round(ms[-1], 3),
    }


def counter(address: str, name: str, **labels: str) -> float:
    return scrape_metrics(address).get((name, frozenset(labels.items())), 0.0)


def deleted_rows(address: str) -> float:
    return sum(
        value
        for (name, _), value in scrape_metrics(address).items()
        if name == "durable_retention_deleted_rows_total"
    )


def seed(database_url: str, workflows: int) -> int:
    """Write the expired workflows; how many rows they are (change log included)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for sql in SEED:
            conn.execute(sql.encode(), {"n": workflows})
        conn.execute("VACUUM ANALYZE")
        rows = 0
        for table, column in conn.execute(
            """SELECT table_name, column_name FROM information_schema.columns
                WHERE table_schema = 'durable'
                  AND column_name IN ('workflow_id', 'destination_id')
                  AND table_name IN (SELECT table_name FROM information_schema.tables
                                      WHERE table_schema = 'durable'
                                        AND table_type = 'BASE TABLE')"""
        ).fetchall():
            sql = f"SELECT count(*) FROM durable.{table} WHERE {column} LIKE 'old-%%'"
            rows += conn.execute(sql.encode()).fetchone()[0]  # type: ignore[index]
        return rows


def measure(
    server_url: str, workflows: int, baseline_s: float, pause_factor: float
) -> dict[str, Any]:
    database = create_database(server_url)
    metrics_port = free_port()
    metrics = f"127.0.0.1:{metrics_port}"
    coordinator = Coordinator(
        database,
        "--metrics-listen",
        metrics,
        "--retention-interval",
        "0.2",
        "--retention-pause-factor",
        str(pause_factor),
    )
    try:
        coordinator.wait_serving()
        began = time.perf_counter()
        rows = seed(database, workflows)
        seed_s = time.perf_counter() - began
        print(f"seeded {workflows} expired workflows, {rows} rows, in {seed_s:.1f}s", flush=True)
        durable.configure(coordinator.address)
        sequential(20)  # warm-up: connections, prepared statements
        take_samples()
        operations = opb_grpc.OperationsServiceStub(coordinator.channel)
        with Load():
            time.sleep(baseline_s)
            baseline = take_samples()

            operations.SetRetention(
                opb.SetRetentionRequest(finished_after=duration(3600)), timeout=RPC_TIMEOUT
            )
            started = time.perf_counter()
            while counter(metrics, "durable_retention_deleted_workflows_total", by="retention") < (
                workflows
            ):
                time.sleep(0.05)
            cleanup_s = time.perf_counter() - started
            during = take_samples()

            time.sleep(baseline_s)
            after = take_samples()
        deleted = deleted_rows(metrics)
        batches = counter(metrics, "durable_retention_batch_duration_seconds_count")
        batch_sum = counter(metrics, "durable_retention_batch_duration_seconds_sum")
    finally:
        durable.configure("127.0.0.1:9")  # let go of the coordinator before it stops
        coordinator.stop()
        drop_database(server_url, database)
    result: dict[str, Any] = {
        "workflows": workflows,
        "pause_factor": pause_factor,
        "rows_seeded": rows,
        "rows_deleted": deleted,
        "cleanup_s": round(cleanup_s, 2),
        "rows_per_s": round(deleted / cleanup_s),
        "workflows_per_s": round(workflows / cleanup_s),
        "batches": batches,
        "batch_mean_ms": round(batch_sum / batches * 1000, 1) if batches else None,
        "baseline": percentiles(baseline),
        "during_cleanup": percentiles(during),
        "after": percentiles(after),
    }
    result["ratio_p50"] = round(
        result["during_cleanup"]["p50_ms"] / result["baseline"]["p50_ms"], 2
    )
    result["ratio_p99"] = round(
        result["during_cleanup"]["p99_ms"] / result["baseline"]["p99_ms"], 2
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="10,000 workflows, an 8 s baseline")
    parser.add_argument(
        "--pause-factor",
        type=float,
        default=1.0,
        help="the coordinator's --retention-pause-factor (its default, 1.0; 0: full speed)",
    )
    parser.add_argument(
        "--json-out", type=Path, help="default: bench/results/retention-<time>.json"
    )
    args = parser.parse_args()
    workflows = 10_000 if args.quick else args.workflows
    baseline_s = 8.0 if args.quick else args.baseline_seconds

    server_url = os.environ.get("DATABASE_URL")
    embedded = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="durable-bench-")) / "pgdata"
        embedded = start_embedded_postgres(data_dir, temporary=True)
        server_url = embedded.url
    try:
        result = measure(server_url, workflows, baseline_s, args.pause_factor)
    finally:
        if embedded is not None:
            embedded.cleanup()
    result["postgres"] = "DATABASE_URL" if embedded is None else "embedded (pgserver)"
    print(json.dumps(result), flush=True)
    print(f"{'phase':<16} {'steps':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in ("baseline", "during_cleanup", "after"):
        figures = result[phase]
        print(f"{phase:<16} {figures['n']:>6} {figures['p50_ms']:>8} {figures['p99_ms']:>8}")
    print(
        f"clean-up/baseline: p50 {result['ratio_p50']}x, p99 {result['ratio_p99']}x;"
        f" deleted {result['workflows']} workflows, {result['rows_deleted']:.0f} rows in"
        f" {result['cleanup_s']}s: {result['rows_per_s']} rows/s"
        f" ({result['workflows_per_s']} workflows/s)"
    )
    out = args.json_out or RESULTS / f"retention-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"raw figures: {out}")


if __name__ == "__main__":
    main()
