"""A worker process for the crash tests: runs one workflow whose steps log side effects.

    python -m tests.crash_worker ADDRESS WORKFLOW_ID LOG_PATH [--hold-at N]

Each step appends its name to LOG_PATH (flushed and fsynced) before returning. With
--hold-at N, step N logs and then blocks forever, so the test can SIGKILL the process
mid-step. Prints the workflow's result on success.
"""

from __future__ import annotations

import argparse
import os
import threading

import durable

STEPS = 5
_hold_at = 0
_log_path = ""


def _log(line: str) -> None:
    with open(_log_path, "a", encoding="utf-8") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


@durable.step
def work(n: int) -> int:
    _log(f"step-{n}")
    if n == _hold_at:
        threading.Event().wait()  # "crash" here: the test kills us
    return n * n


@durable.workflow(name="tests.crash_worker.pipeline")
def pipeline() -> int:
    total = 0
    for n in range(1, STEPS + 1):
        total += work(n)
        durable.set_event("progress", n * 100 // STEPS)
    return total


def main() -> None:
    global _hold_at, _log_path
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("workflow_id")
    parser.add_argument("log_path")
    parser.add_argument("--hold-at", type=int, default=0)
    args = parser.parse_args()
    _hold_at, _log_path = args.hold_at, args.log_path
    durable.configure(args.address)
    with durable.set_workflow_id(args.workflow_id):
        handle = durable.start_workflow(pipeline)
    print(handle.result(timeout=60), flush=True)


if __name__ == "__main__":
    main()
