"""First figures for the durable core: per-step latency and event delivery latency.

    .venv/bin/python -m bench.core_latency            # embedded Postgres
    DATABASE_URL=postgresql://... .venv/bin/python -m bench.core_latency

Starts real coordinator processes (two, for the cross-coordinator figure), drives them over
real gRPC, prints medians and p99, and writes bench/results/core_latency-<time>.json.
The side-by-side comparison with DBOS belongs to the benchmark suite (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import durable
from coordinator.embedded import start_embedded_postgres
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, create_database, drop_database

RESULTS = Path(__file__).parent / "results"


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "mean_ms": statistics.fmean(ms),
    }


def sdk_step_latency(address: str, steps: int) -> list[float]:
    """Time of each of `steps` sequential @step calls inside one workflow."""
    durable.configure(address)
    samples: list[float] = []

    @durable.step
    def noop(i: int) -> int:
        return i

    @durable.workflow(name="bench.sequential")
    def sequential(n: int) -> None:
        for i in range(n):
            start = time.perf_counter()
            noop(i)
            samples.append(time.perf_counter() - start)

    sequential(steps)
    return samples


def replay_time(address: str, steps: int) -> float:
    """Seconds to resume a PENDING workflow whose `steps` steps are all recorded."""
    client = durable.Client(address)
    started = client.start_workflow("", "bench.replay", pb.Payload(encoding="json", data=b"{}"))
    workflow_id = started.workflow.workflow_id
    for i in range(1, steps + 1):
        client.run_step(
            pb.RunStepRequest(
                workflow_id=workflow_id, step_id=i, name="noop", output=pb.Payload(data=b"1")
            )
        )
    start = time.perf_counter()
    again = client.start_workflow(workflow_id, "bench.replay", pb.Payload(data=b"{}"))
    history = client.history(again)
    elapsed = time.perf_counter() - start
    assert len(history) == steps
    client.close()
    return elapsed


def delivery_latency(writer_address: str, reader_address: str, rounds: int) -> list[float]:
    """SetEvent call start -> the value arriving on a reader's open follow stream."""
    writer = durable.Client(writer_address)
    reader = durable.Client(reader_address)
    started = writer.start_workflow("", "bench.events", pb.Payload(data=b"{}"))
    workflow_id = started.workflow.workflow_id
    arrivals: queue.Queue[tuple[int, float]] = queue.Queue()

    def follow() -> None:
        for message in reader.get_event(workflow_id, "progress", 120, follow=True):
            if message.HasField("event"):
                arrivals.put((message.event.version, time.perf_counter()))

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    samples = []
    for i in range(1, rounds + 2):
        sent = time.perf_counter()
        writer.set_event(
            pb.SetEventRequest(
                workflow_id=workflow_id, step_id=i, key="progress", value=pb.Payload(data=b"1")
            )
        )
        version, arrived = arrivals.get(timeout=10)
        assert version == i
        if i > 1:  # the first value may race the stream being set up
            samples.append(arrived - sent)
    writer.finish_workflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=pb.Payload(data=b"null"))
    )
    follower.join(timeout=10)  # the stream ends with workflow_finished
    writer.close()
    reader.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--replay-steps", type=int, default=1000)
    args = parser.parse_args()

    server_url = os.environ.get("DATABASE_URL")
    embedded = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="durable-bench-")) / "pgdata"
        embedded = start_embedded_postgres(data_dir, temporary=True)
        server_url = embedded.url
    database_url = create_database(server_url)
    a, b = Coordinator(database_url), Coordinator(database_url)
    try:
        a.wait_serving()
        b.wait_serving()
        sdk_step_latency(a.address, 20)  # warm-up: connections, prepared statements
        results: dict[str, Any] = {
            "postgres": "DATABASE_URL" if embedded is None else "embedded (pgserver)",
            "sdk_step": summary(sdk_step_latency(a.address, args.steps)),
            "delivery_same_coordinator": summary(
                delivery_latency(a.address, a.address, args.rounds)
            ),
            "delivery_across_coordinators": summary(
                delivery_latency(a.address, b.address, args.rounds)
            ),
            f"replay_{args.replay_steps}_steps_ms": replay_time(a.address, args.replay_steps)
            * 1000,
        }
    finally:
        a.stop()
        b.stop()
        drop_database(server_url, database_url)
        if embedded is not None:
            embedded.cleanup()

    print(f"{'figure':<32} {'median ms':>10} {'p99 ms':>10} {'n':>6}")
    for name, value in results.items():
        if isinstance(value, dict):
            print(
                f"{name:<32} {value['median_ms']:>10.3f} {value['p99_ms']:>10.3f} {value['n']:>6}"
            )
        elif isinstance(value, float):
            print(f"{name:<32} {value:>10.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"core_latency-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
