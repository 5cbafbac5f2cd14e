"""What partitions cost a queue's claims: claim throughput with 1 to 1,000 partitions.

    DATABASE_URL=postgresql://... .venv/bin/python -m bench.queue_partitions \
        [--workflows 10000] [--partitions 1,100,1000] [--batch 10,100]

For each partition count, on a fresh database with one coordinator process: enqueues
`--workflows` workflows over that many partitions (round robin, over gRPC, 32 at once),
then one worker session claims them all with raw PollWork calls of `--batch` workflows
each (no finish: a claim is what is timed) and reports claims per second, and the median
and p99 latency of one PollWork call. The claim walks the partitions that hold ENQUEUED
work (coordinator/store/queues.py), so its cost grows with them; the figures say by how
much. Prints one JSON line per (partitions, batch) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    create_database,
    drop_database,
    duration,
    payload,
    running_coordinator,
)


def measure(server_url: str, workflows: int, partitions: int, batch: int) -> dict[str, float]:
    database = create_database(server_url)
    try:
        with running_coordinator(database) as coordinator:
            stub = coordinator.stub
            tag = uuid.uuid4().hex[:8]
            queue, name = f"bench-q-{tag}", f"bench-wf-{tag}"

            def enqueue(i: int) -> None:
                stub.StartWorkflow(
                    pb.StartWorkflowRequest(
                        workflow_id=f"bench-{tag}-{i}",
                        name=name,
                        input=payload({"args": [], "kwargs": {}}),
                        queue_name=queue,
                        partition_key=f"p{i % partitions}",
                    ),
                    timeout=RPC_TIMEOUT,
                )

            with ThreadPoolExecutor(32) as pool:
                list(pool.map(enqueue, range(workflows)))
            executor = f"bench-exec-{tag}"
            stub.Heartbeat(
                pb.HeartbeatRequest(
                    executor_id=executor,
                    workflow_names=[name],
                    queues=[queue],
                    lease=duration(600),
                ),
                timeout=RPC_TIMEOUT,
            )
            calls: list[float] = []
            claimed = 0
            began = time.perf_counter()
            while claimed < workflows:
                start = time.perf_counter()
                reply = stub.PollWork(
                    pb.PollWorkRequest(
                        executor_id=executor, max_workflows=batch, timeout=duration(0)
                    ),
                    timeout=RPC_TIMEOUT,
                )
                calls.append(time.perf_counter() - start)
                if not reply.workflows:
                    raise RuntimeError(f"claimed {claimed} of {workflows}, then nothing")
                claimed += len(reply.workflows)
            took = time.perf_counter() - began
    finally:
        drop_database(server_url, database)
    calls.sort()
    return {
        "partitions": partitions,
        "batch": batch,
        "workflows": workflows,
        "claims_per_second": round(workflows / took, 1),
        "poll_median_ms": round(statistics.median(calls) * 1000, 2),
        "poll_p99_ms": round(calls[min(len(calls) - 1, int(len(calls) * 0.99))] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--partitions", default="1,100,1000")
    parser.add_argument("--batch", default="10,100")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        raise SystemExit("set DATABASE_URL to a Postgres server (a database is made per run)")
    results = []
    for partitions in (int(p) for p in args.partitions.split(",")):
        for batch in (int(b) for b in args.batch.split(",")):
            result = measure(server_url, args.workflows, partitions, batch)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"{'partitions':>10} {'batch':>5} {'claims/s':>9} {'poll p50 ms':>11} {'p99 ms':>7}")
    for r in results:
        print(
            f"{r['partitions']:>10} {r['batch']:>5} {r['claims_per_second']:>9}"
            f" {r['poll_median_ms']:>11} {r['poll_p99_ms']:>7}"
        )


if __name__ == "__main__":
    main()
