"""The workflow the reliability suite runs, and the two processes that run it, in the SDK's
sync face or its async face (`--face async`).

    python -m tests.reliability.flow drive TARGET DATABASE_URL PREFIX FIRST COUNT
        [--face sync|async] [--steps N] [--pause SECONDS] [--threads N] [--watch-every K]
    python -m tests.reliability.flow work TARGET DATABASE_URL PREFIX FIRST COUNT
        --name NAME [--face sync|async] [--steps N] [--pause SECONDS] [--lease SECONDS]

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

With `--face async` the same workflow is `order_async`, an `async def` workflow whose odd
steps are the `async def` step `work_async` and whose even steps are the plain `work` run
through `durable.aio.run_step` (so both kinds of step of the async face meet the faults),
with the same records, results and side effects. `drive` then runs the workflows as tasks
of one event loop (--threads of them at once) and watches with `durable.aio.watch_event`;
`work` is a `durable.aio.Worker` on one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import durable.aio

SIDE_EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS side_effects (
    run_id      uuid        PRIMARY KEY,
    workflow_id text        NOT NULL,
    step        integer     NOT NULL,
    process     text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

WORKFLOW_NAME = "reliability.order"
# Its own name, so the async face's workers never claim a sync workflow (nor the reverse).
ASYNC_WORKFLOW_NAME = "reliability.order_async"
INSERT_SIDE_EFFECT = (
    "INSERT INTO side_effects (run_id, workflow_id, step, process)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING"
)
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
            _conn[0].execute(INSERT_SIDE_EFFECT, (run_id, workflow_id, step, Settings.process))
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


# --- the async face: the same workflow, side effects and processes on one event loop ------

# The event loop's own connection, for the async steps (the plain steps run through
# run_step use the thread-side one above).
_aconn_lock: asyncio.Lock | None = None
_aconn: list[psycopg.AsyncConnection[Any]] = []


async def _insert_async(run_id: uuid.UUID, workflow_id: str, step: int) -> None:
    global _aconn_lock
    _aconn_lock = _aconn_lock or asyncio.Lock()
    async with _aconn_lock:
        if not _aconn or _aconn[0].closed:
            _aconn[:] = [
                await psycopg.AsyncConnection.connect(
                    Settings.database_url, autocommit=True, connect_timeout=5
                )
            ]
        try:
            await _aconn[0].execute(
                INSERT_SIDE_EFFECT, (run_id, workflow_id, step, Settings.process)
            )
        except BaseException:
            # Also on cancellation: a query cut off mid-way leaves the connection unusable.
            await _aconn[0].close()
            raise


async def record_side_effect_async(workflow_id: str, step: int) -> None:
    """`record_side_effect` without blocking the event loop."""
    run_id = uuid.uuid4()
    deadline = time.monotonic() + SIDE_EFFECT_PATIENCE
    while True:
        try:
            await _insert_async(run_id, workflow_id, step)
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@durable.step
async def work_async(n: int, j: int, pause: float) -> int:
    await record_side_effect_async(durable.aio.current_workflow_id() or "", j)
    if pause:
        await asyncio.sleep(pause)
    return n * j


@durable.workflow(name=ASYNC_WORKFLOW_NAME)
async def order_async(n: int, steps: int, pause: float) -> int:
    total = 0
    for j in range(1, steps + 1):
        if j % 2:
            total += await work_async(n, j, pause)
        else:
            total += await durable.aio.run_step(work, n, j, pause)
        await durable.aio.set_event("progress", j)
    return total


async def watch_async(workflow: str) -> None:
    values: list[Any] = []
    times: list[float] = []
    try:
        async for value in durable.aio.watch_event(workflow, "progress", timeout=300):
            values.append(value)
            times.append(time.time())
        emit({"watch": workflow, "values": values, "times": times})
    except Exception as exc:
        emit({"watch": workflow, "values": values, "times": times, "error": repr(exc)})


async def run_one_async(
    prefix: str, n: int, steps: int, pause: float, watched: bool, slots: asyncio.Semaphore
) -> None:
    async with slots:
        workflow = workflow_id(prefix, n)
        watcher = asyncio.create_task(watch_async(workflow)) if watched else None
        try:
            with durable.aio.set_workflow_id(workflow):
                emit({"id": workflow, "result": await order_async(n, steps, pause)})
        except Exception as exc:
            emit({"id": workflow, "error": repr(exc)})
            if watcher is not None:
                # Its workflow makes no more progress here: the error above is the news, so
                # do not hold the process (and the test) for the watch's timeout.
                watcher.cancel()
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def drive_async(args: argparse.Namespace) -> None:
    durable.aio.configure(args.target)
    slots = asyncio.Semaphore(args.threads)
    async with asyncio.TaskGroup() as tasks:
        for n in range(args.first, args.first + args.count):
            watched = args.watch_every > 0 and n % args.watch_every == 0
            tasks.create_task(run_one_async(args.prefix, n, args.steps, args.pause, watched, slots))
    emit("done")


async def serve_async(args: argparse.Namespace) -> None:
    durable.aio.configure(args.target)
    worker = durable.aio.Worker(
        [order_async], name=args.name, lease_seconds=args.lease, max_concurrent=100
    )
    await worker.start()
    for n in range(args.first, args.first + args.count):
        with durable.aio.set_workflow_id(workflow_id(args.prefix, n)):
            await durable.aio.start_workflow(order_async, n, args.steps, args.pause)
    emit(f"ready {worker.executor_id}")
    await worker.run(shutdown_timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drive", "work"])
    parser.add_argument("--face", choices=["sync", "async"], default="sync")
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
    if args.face == "async":
        asyncio.run((drive_async if args.mode == "drive" else serve_async)(args))
        return
    durable.configure(args.target)
    (drive if args.mode == "drive" else serve)(args)


if __name__ == "__main__":
    main()
