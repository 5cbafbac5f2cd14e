"""A worker process for the recovery tests: a `durable.Worker` whose workflows' steps log
their side effects, and which starts workflows when told to on stdin.

    python -m tests.worker_process ADDRESS LOG_PATH TAG [--name NAME] [--lease SECONDS]
                                   [--hold-at N]

Workflow names end in TAG, so each test's workers run only that test's workflows. Every
step appends "LABEL WORKFLOW_ID WORKER_NAME UNIX_TIME" to LOG_PATH (flushed and fsynced)
before it does anything else. With --hold-at N, pipeline step N then waits until the file
LOG_PATH.release exists (the test kills, stops or releases the process meanwhile).

Prints "ready EXECUTOR_ID" once the worker is registered. Reads commands on stdin:
"start KIND WORKFLOW_ID [TIMEOUT_SECONDS]" starts a workflow in this process (under the
worker's session) and prints "started WORKFLOW_ID". Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import durable

PIPELINE_STEPS = 5
# Retries of `flaky`: what the test expects of them.
FLAKY_RETRY = durable.StepRetry(
    max_attempts=3,
    initial_backoff_seconds=0.4,
    multiplier=2.0,
    jitter=0.5,
    retry_on=(TimeoutError,),
)
FLAKY_FAILURES = 2


class Options:
    log_path = Path()
    name = ""
    hold_at = 0


attempts: Counter[str] = Counter()


def side_effect(label: str) -> None:
    line = f"{label} {durable.current_workflow_id()} {Options.name} {time.time():.6f}\n"
    with Options.log_path.open("a", encoding="utf-8") as log:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


@durable.step
def work(n: int) -> str:
    side_effect(f"step-{n}")
    if n == Options.hold_at:
        release = Options.log_path.with_name(Options.log_path.name + ".release")
        while not release.exists():
            time.sleep(0.02)
    return f"{n}:{Options.name}"


@durable.step(retry=FLAKY_RETRY)
def flaky() -> str:
    side_effect("flaky")
    workflow_id = durable.current_workflow_id() or ""
    attempts[workflow_id] += 1
    if attempts[workflow_id] <= FLAKY_FAILURES:
        raise TimeoutError(f"attempt {attempts[workflow_id]} timed out")
    return f"ok after {attempts[workflow_id]}"


@durable.step(retry=FLAKY_RETRY)
def picky() -> str:
    side_effect("picky")
    raise ValueError("not worth retrying")


@durable.step
def poison() -> None:
    side_effect("poison")
    os.kill(os.getpid(), signal.SIGKILL)


def pipeline() -> list[str]:
    outputs = []
    for n in range(1, PIPELINE_STEPS + 1):
        outputs.append(work(n))
        durable.set_event("progress", n * 100 // PIPELINE_STEPS)
    return outputs


def retried() -> dict[str, str]:
    result = {"flaky": flaky()}
    try:
        picky()
    except ValueError as exc:
        result["picky"] = str(exc)
    return result


def poisoned() -> None:
    poison()


# How long `sleeper` sleeps between its two steps (durable.sleep).
SLEEP_SECONDS = 6.0


def sleeper() -> list[str]:
    first = work(1)
    durable.sleep(SLEEP_SECONDS)
    return [first, work(2)]


def workflows(tag: str) -> dict[str, Callable[..., Any]]:
    """The workflows by kind, named for this tag."""
    return {
        "pipeline": durable.workflow(name=f"pipeline.{tag}")(pipeline),
        "timed": durable.workflow(name=f"timed.{tag}", timeout=1.0)(pipeline),
        "retried": durable.workflow(name=f"retried.{tag}")(retried),
        "poisoned": durable.workflow(name=f"poisoned.{tag}")(poisoned),
        "sleeper": durable.workflow(name=f"sleeper.{tag}")(sleeper),
    }


def serve_commands(kinds: dict[str, Callable[..., Any]]) -> None:
    for line in sys.stdin:
        command, kind, workflow_id, *rest = line.split()
        assert command == "start", line
        timeout = float(rest[0]) if rest else None
        with contextlib.ExitStack() as stack:
            stack.enter_context(durable.set_workflow_id(workflow_id))
            if timeout is not None:
                stack.enter_context(durable.set_workflow_timeout(timeout))
            durable.start_workflow(kinds[kind])
        print(f"started {workflow_id}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("log_path", type=Path)
    parser.add_argument("tag")
    parser.add_argument("--name", default=f"worker-{os.getpid()}")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--hold-at", type=int, default=0)
    args = parser.parse_args()
    Options.log_path, Options.name, Options.hold_at = args.log_path, args.name, args.hold_at
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    durable.configure(args.address)
    kinds = workflows(args.tag)
    worker = durable.Worker(kinds.values(), name=args.name, lease_seconds=args.lease)
    worker.start()
    print(f"ready {worker.executor_id}", flush=True)
    threading.Thread(target=serve_commands, args=(kinds,), daemon=True).start()
    worker.run_forever(shutdown_timeout=5)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
