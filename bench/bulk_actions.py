"""What a bulk action costs: CancelWorkflows / ResumeWorkflows over many workflows.

    DATABASE_URL=postgresql://... .venv/bin/python -m bench.bulk_actions \
        [--workflows 100000] [--others 400000]

On a fresh database with one coordinator process: inserts `--workflows` ENQUEUED workflows
of one name and `--others` finished ones of another (one INSERT each: what is timed is the
bulk action, not the starts), then times a dry run by name, the cancel (workflows per
second, and the median and slowest gap between two progress messages: one batch of 500),
and the resume of the same set. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import psycopg

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from tests.support import create_database, drop_database, running_coordinator


def _insert(database_url: str, workflows: int, others: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO durable.workflows (workflow_id, namespace, name, status, queue_name)
               SELECT 'm-' || n, 'default', 'bench.target', 'ENQUEUED', 'q'
                 FROM generate_series(1, %s) n""",
            (workflows,),
        )
        conn.execute(
            """INSERT INTO durable.workflows (workflow_id, namespace, name, status)
               SELECT 'o-' || n, 'default', 'bench.other', 'SUCCESS'
                 FROM generate_series(1, %s) n""",
            (others,),
        )
        conn.execute("ANALYZE durable.workflows")


def measure(database_url: str, workflows: int, others: int) -> dict[str, float]:
    with running_coordinator(database_url) as coordinator:  # it applies the migrations
        _insert(database_url, workflows, others)
        ops = opb_grpc.OperationsServiceStub(coordinator.channel)
        where = pb.ListWorkflowsRequest(name="bench.target")
        started = time.monotonic()
        dry = list(ops.CancelWorkflows(opb.CancelWorkflowsRequest(filter=where, dry_run=True)))
        dry_seconds = time.monotonic() - started
        assert dry[-1].progress.matched == workflows

        started = time.monotonic()
        stamps = [started]
        last = opb.BulkProgress()
        for message in ops.CancelWorkflows(opb.CancelWorkflowsRequest(filter=where)):
            stamps.append(time.monotonic())
            last = message.progress
        cancel_seconds = stamps[-1] - started
        assert last.changed == workflows
        gaps = [b - a for a, b in itertools.pairwise(stamps)]

        started = time.monotonic()
        resumed = list(ops.ResumeWorkflows(opb.ResumeWorkflowsRequest(filter=where)))
        resume_seconds = time.monotonic() - started
        assert resumed[-1].progress.changed == workflows
    return {
        "workflows": workflows,
        "others": others,
        "dry_run_seconds": round(dry_seconds, 3),
        "cancel_seconds": round(cancel_seconds, 2),
        "cancel_per_second": round(workflows / cancel_seconds),
        "batch_p50_ms": round(statistics.median(gaps) * 1000),
        "batch_max_ms": round(max(gaps) * 1000),
        "resume_seconds": round(resume_seconds, 2),
        "resume_per_second": round(workflows / resume_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=400_000)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        raise SystemExit("set DATABASE_URL to a Postgres server (a database is made per run)")
    database_url = create_database(server_url)
    try:
        print(json.dumps(measure(database_url, args.workflows, args.others)))
    finally:
        drop_database(server_url, database_url)


if __name__ == "__main__":
    main()
