"""Data processing with live progress: a workflow publishes events, the caller watches them.

    python -m examples.data_processing [--coordinator HOST:PORT] [--workflow-id ID]
                                       [--step-seconds 0.5] [--timeout 60] [--data TEXT]

The workflow `process_data` runs two steps and publishes two events while it works:
"status" ("processing", then "complete") and "progress" (50, then 100). The main thread
starts it in the background and prints every progress value as it arrives:

    workflow: data-1f0c...
    progress: 50%
    progress: 100%
    status: complete
    result: done

Every step and every `set_event` is checkpointed in the coordinator. Run the program again
with the same `--workflow-id` and nothing runs again: the recorded result comes back.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import durable

# ---------------------------------------------------------------------------------------
# Steps: ordinary functions whose outcome the coordinator records once per workflow. A
# workflow resumed after a crash gets the recorded output back instead of running them
# again. Inputs and outputs must be JSON-serializable.
# ---------------------------------------------------------------------------------------


@durable.step
def clean(data: str, seconds: float) -> str:
    """Step one: normalise the input (the sleep stands in for real work)."""
    time.sleep(seconds)
    return " ".join(data.split()).lower()


@durable.step
def count_words(text: str, seconds: float) -> int:
    """Step two: analyse the cleaned text."""
    time.sleep(seconds)
    return len(text.split())


# ---------------------------------------------------------------------------------------
# The workflow: deterministic code that calls steps and publishes events. An explicit
# name keeps it the same whether this file runs as a script or as a module, because a
# workflow is resumed under the name it was started with.
# ---------------------------------------------------------------------------------------


@durable.workflow(name="examples.process_data")
def process_data(data: str, step_seconds: float = 0.5) -> str:
    # Events are key -> value; readers see the latest value, watchers see every value.
    # `set_event` is only allowed in the workflow body, never inside a step.
    durable.set_event("status", "processing")
    cleaned = clean(data, step_seconds)
    durable.set_event("progress", 50)
    count_words(cleaned, step_seconds)
    durable.set_event("progress", 100)
    durable.set_event("status", "complete")
    return "done"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.data_processing",
        description="Run the process_data workflow and watch its progress live.",
    )
    parser.add_argument(
        "--coordinator",
        metavar="ADDRESS",
        default=None,
        help="coordinator host:port (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--workflow-id",
        default=None,
        help="workflow ID; reuse one to get its recorded result (default: a new one)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=0.5,
        help="how long each step works, so progress is visible (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="longest wait for events and the result, in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        default="The Quick  Brown Fox",
        help="text to process (default: %(default)r)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # Point the SDK at a coordinator; None means $DURABLE_COORDINATOR or the default.
    client = durable.configure(args.coordinator)
    workflow_id = args.workflow_id or f"data-{uuid.uuid4().hex}"
    try:
        # `set_workflow_id` chooses the ID of the workflow started inside the block.
        # `start_workflow` records the start, then runs the body in a background thread
        # of this process and returns a handle at once.
        with durable.set_workflow_id(workflow_id):
            handle = durable.start_workflow(process_data, args.data, args.step_seconds)
        print(f"workflow: {handle.workflow_id}", flush=True)

        # Watch "progress": the current value first (if any), then each new one as it is
        # set. The loop ends when the workflow finishes or the timeout passes.
        for percent in durable.watch_event(handle.workflow_id, "progress", timeout=args.timeout):
            print(f"progress: {percent}%", flush=True)

        # `get_event` returns the latest value (or None if none is set within the timeout).
        # Events can be read by anyone who knows the workflow ID, from any process.
        status = durable.get_event(handle.workflow_id, "status", timeout=args.timeout)
        print(f"status: {status}", flush=True)

        # The workflow's return value (or its exception, raised again here).
        print(f"result: {handle.result(timeout=args.timeout)}", flush=True)
    except durable.CoordinatorUnavailableError as exc:
        print(f"cannot reach the coordinator at {client.target}: {exc}", file=sys.stderr)
        return 2
    except durable.CoordinatorError as exc:
        # E.g. WorkflowConflictError: this ID was already used by another workflow.
        print(f"the coordinator refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
