"""The workflow the reliability suite runs, and the two processes that run it.

    python -m tests.reliability.flow drive TARGET DATABASE_URL PREFIX FIRST COUNT
        [--steps N] [--pause SECONDS] [--threads N] [--watch-every K]
    python -m tests.reliability.flow work TARGET DATABASE_URL PREFIX FIRST COUNT
        --name NAME [--steps N] [--pause SECONDS] [--lease SECONDS]

Workflow PREFIX-i (i from FIRST, COUNT of them) is `order(i, steps, pause)`: for j in
1..steps, step `work` returns i*j and then the workflow sets event "progress" to j; its
result is i * steps * (steps + 1) / 2. Each run of a step first inserts a row into the
test-owned table `side_effects` (workflow ID, step, process name, database time), so the
test counts how often each step really ran.

`drive`: an SDK client process. It runs the workflows in a thread pool and, for every
K-th one, watches its "progress" event from before its start. It writes one JSON line per
outcome ({"id", "result"} or {"id", "error"}) and per watch ({"watch", "values", "times"}),
then "done". It never restarts a workflow: whatever the faults, the SDK's own retries
must carry every call through.

`work`: a `durable.Worker` process that starts its share of the workflows under its own
session, prints "ready EXECUTOR_ID", and runs (and takes over others' work) until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

import durable

SIDE_EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS side_effects (
    run_id      uuid        PRIMARY KEY,
    workflow_id text        NOT NULL,
    step        integer     NOT NULL,
    process     text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

WORKFLOW_NAME = "reliability.order"
# How long a step keeps trying to write its side effect while the database is away.
SIDE_EFFECT_PATIENCE = 60.0


class Settings:
    database_url = ""
    process = ""


# One connection per process, shared under a lock: a worker runs up to 100 workflows at
# once, and a connection each would exhaust Postgres' max_connections.
_conn_lock = threading.Lock()
_conn: list[psycopg.Connection[Any]] = []
_print_lock = threading.Lock()


def emit(line: dict[str, Any] | str) -> None:
    text = line if isinstance(line, str) else json.dumps(line)
    with _print_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _insert(run_id: uuid.UUID, workflow_id: str, step: int) -> None:
    with _conn_lock:
        if not _conn or _conn[0].closed:
            _conn[:] = [psycopg.connect(Settings.database_url, autocommit=True, connect_timeout=5)]
        try:
            _conn[0].execute(
                "INSERT INTO side_effects (run_id, workflow_id, step, process)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                (run_id, workflow_id, step, Settings.process),
            )
        except psycopg.OperationalError:
            _conn[0].close()
            raise


def record_side_effect(workflow_id: str, step: int) -> None:
    """One row per run of a step. The run ID makes a retried insert (after a lost commit
    reply, e.g. while Postgres restarts) count once, so only real re-runs show twice."""
    run_id = uuid.uuid4()
    deadline = time.monotonic() + SIDE_EFFECT_PATIENCE
    while True:
        try:
            _insert(run_id, workflow_id, step)
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@durable.step
def work(n: int, j: int, pause: float) -> int:
    record_side_effect(durable.current_workflow_id() or "", j)
    if pause:
        time.sleep(pause)
    return n * j


@durable.workflow(name=WORKFLOW_NAME)
def order(n: int, steps: int, pause: float) -> int:
    total = 0
    for j in range(1, steps + 1):
        total += work(n, j, pause)
        durable.set_event("progress", j)
    return total


def expected_result(n: int, steps: int) -> int:
    return n * steps * (steps + 1) // 2


def workflow_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n}"


def watch(workflow: str) -> None:
    values: list[Any] = []
    times: list[float] = []
    try:
        for value in durable.watch_event(workflow, "progress", timeout=300):
            values.append(value)
            times.append(time.time())
        emit({"watch": workflow, "values": values, "times": times})
    except Exception as exc:
        emit({"watch": workflow, "values": values, "times": times, "error": repr(exc)})


def run_one(prefix: str, n: int, steps: int, pause: float, watched: bool) -> None:
    workflow = workflow_id(prefix, n)
    watcher = None
    if watched:
        watcher = threading.Thread(target=watch, args=(workflow,))
        watcher.start()
    try:
        with durable.set_workflow_id(workflow):
            emit({"id": workflow, "result": order(n, steps, pause)})
    except Exception as exc:
        emit({"id": workflow, "error": repr(exc)})
    if watcher is not None:
        watcher.join()


def drive(args: argparse.Namespace) -> None:
    numbers = range(args.first, args.first + args.count)
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for n in numbers:
            watched = args.watch_every > 0 and n % args.watch_every == 0
            pool.submit(run_one, args.prefix, n, args.steps, args.pause, watched)
    emit("done")


def serve(args: argparse.Namespace) -> None:
    worker = durable.Worker([order], name=args.name, lease_seconds=args.lease, max_concurrent=100)
    worker.start()
    for n in range(args.first, args.first + args.count):
        with durable.set_workflow_id(workflow_id(args.prefix, n)):
            durable.start_workflow(order, n, args.steps, args.pause)
    emit(f"ready {worker.executor_id}")
    worker.run_forever(shutdown_timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drive", "work"])
    parser.add_argument("target")
    parser.add_argument("database_url")
    parser.add_argument("prefix")
    parser.add_argument("first", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--watch-every", type=int, default=0)
    parser.add_argument("--name", default=f"process-{os.getpid()}")
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args()
    Settings.database_url, Settings.process = args.database_url, args.name
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    durable.configure(args.target)
    (drive if args.mode == "drive" else serve)(args)


if __name__ == "__main__":
    main()
