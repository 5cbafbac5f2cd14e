"""A worker process for the child-workflow and queue tests: a `durable.Worker` serving one
queue, whose workflows' steps log their side effects.

    python -m tests.queue_worker_process ADDRESS LOG_PATH TAG --name NAME [--lease SECONDS]
        [--hold-at LABEL] [--concurrency N] [--worker-concurrency N] [--max-concurrent N]
        [--step-seconds SECONDS]

Workflow and queue names end in TAG, so each test's workers see only that test's work.
Every step appends "LABEL WORKFLOW_ID WORKER_NAME UNIX_TIME" to LOG_PATH (flushed and
fsynced) when it starts, and queued steps also "LABEL-end ..." when they end. With
--hold-at LABEL, the step LABEL waits until the file LOG_PATH.release exists.

Prints "ready EXECUTOR_ID" once the worker is registered, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import durable


class Options:
    log_path = Path()
    name = ""
    hold_at = ""
    step_seconds = 0.0


def side_effect(label: str) -> None:
    line = f"{label} {durable.current_workflow_id()} {Options.name} {time.time():.6f}\n"
    with Options.log_path.open("a", encoding="utf-8") as log:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


@durable.step
def effect(label: str) -> str:
    side_effect(label)
    if label == Options.hold_at:
        release = Options.log_path.with_name(Options.log_path.name + ".release")
        while not release.exists():
            time.sleep(0.02)
    return f"{label}:{Options.name}"


@durable.step
def timed_effect(label: str) -> None:
    side_effect(label)
    time.sleep(Options.step_seconds)
    side_effect(f"{label}-end")


def workflows(tag: str) -> dict[str, Callable[..., Any]]:
    """The workflows by kind, named for this tag."""

    @durable.workflow(name=f"child.{tag}")
    def child(n: int) -> str:
        effect("c1")
        return f"child-{n}"

    @durable.workflow(name=f"parent.{tag}")
    def parent(n: int) -> list[str]:
        effect("p1")
        result = child(n)
        effect("p2")
        return ["parent", result]

    @durable.workflow(name=f"queued.{tag}")
    def queued(i: int) -> int:
        timed_effect("q")
        return i * 10

    return {"child": child, "parent": parent, "queued": queued}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("log_path", type=Path)
    parser.add_argument("tag")
    parser.add_argument("--name", default=f"worker-{os.getpid()}")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--hold-at", default="")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--worker-concurrency", type=int, default=None)
    parser.add_argument("--max-concurrent", type=int, default=16)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    args = parser.parse_args()
    Options.log_path, Options.name, Options.hold_at = args.log_path, args.name, args.hold_at
    Options.step_seconds = args.step_seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    durable.configure(args.address)
    queue = durable.Queue(
        f"queue.{args.tag}",
        concurrency=args.concurrency,
        worker_concurrency=args.worker_concurrency,
    )
    worker = durable.Worker(
        workflows(args.tag).values(),
        name=args.name,
        lease_seconds=args.lease,
        max_concurrent=args.max_concurrent,
        queues=[queue],
    )
    worker.start()
    print(f"ready {worker.executor_id}", flush=True)
    worker.run_forever(shutdown_timeout=5)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
