"""An async worker process for the recovery tests (tests/test_async_worker_recovery.py): a
`durable.aio.Worker` running an `async def` workflow whose steps log their side effects.

    python -m tests.async_worker_process ADDRESS LOG_PATH TAG --name NAME [--lease SECONDS]
                                         [--hold-at N] [--step-seconds S] [--queue NAME]
                                         [--start WORKFLOW_ID]

The workflow is named `async_pipeline.TAG`, so each test's workers run only that test's
workflow. Its step N appends "step-N WORKFLOW_ID NAME UNIX_TIME" to LOG_PATH (flushed and
fsynced; the format `tests.worker_harness.SideEffects` reads) before anything else, then
takes --step-seconds (default 0) to finish; with --hold-at N, step N instead waits forever
(the test kills or stops the process meanwhile). With --queue, the worker also serves
that queue (the test enqueues the workflow). With --start, the process starts that
workflow itself once its worker is registered, so it runs under the worker's session and
another worker recovers it if this one dies.

Prints "ready EXECUTOR_ID" once the worker is registered and "started WORKFLOW_ID" after a
--start. Runs until SIGTERM or SIGINT (`Worker.run`), then prints "stopped".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import durable
import durable.aio

STEPS = 5


class Options:
    log_path = Path()
    name = ""
    hold_at = 0
    step_seconds = 0.0


def side_effect(label: str) -> None:
    line = f"{label} {durable.current_workflow_id()} {Options.name} {time.time():.6f}\n"
    with Options.log_path.open("a", encoding="utf-8") as log:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


@durable.step(name="async_worker_process.work")
async def work(n: int) -> str:
    side_effect(f"step-{n}")
    if n == Options.hold_at:
        await asyncio.Event().wait()  # in flight until the test kills this process
    await asyncio.sleep(Options.step_seconds)
    return f"{n}:{Options.name}"


async def pipeline() -> list[str]:
    outputs = []
    for n in range(1, STEPS + 1):
        outputs.append(await work(n))
        await durable.aio.set_event("progress", n * 100 // STEPS)
    return outputs


def workflow(tag: str) -> Callable[..., Any]:
    wrapped: Callable[..., Any] = durable.workflow(name=f"async_pipeline.{tag}")(pipeline)
    return wrapped


async def serve(address: str, tag: str, lease: float, queue: str | None, start: str | None) -> None:
    durable.aio.configure(address)
    flow = workflow(tag)
    queues = [durable.Queue(queue)] if queue else []
    worker = durable.aio.Worker([flow], name=Options.name, lease_seconds=lease, queues=queues)
    await worker.start()
    print(f"ready {worker.executor_id}", flush=True)
    if start:
        with durable.aio.set_workflow_id(start):
            await durable.aio.start_workflow(flow)
        print(f"started {start}", flush=True)
    await worker.run(shutdown_timeout=5)
    print("stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("log_path", type=Path)
    parser.add_argument("tag")
    parser.add_argument("--name", default=f"async-worker-{os.getpid()}")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--hold-at", type=int, default=0)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--queue", default=None)
    parser.add_argument("--start", default=None)
    args = parser.parse_args()
    Options.log_path, Options.name, Options.hold_at = args.log_path, args.name, args.hold_at
    Options.step_seconds = args.step_seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.address, args.tag, args.lease, args.queue, args.start))


if __name__ == "__main__":
    main()
