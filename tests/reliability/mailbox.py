"""Messages and a queue through faults: one process that enqueues workflows on a queue, runs
them in its own `durable.Worker`, and sends each one the message it waits for.

    python -m tests.reliability.mailbox TARGET DATABASE_URL PREFIX COUNT [--pace SECONDS]

Workflow PREFIX-i (i in 0..COUNT-1) is `relay()`, enqueued on queue PREFIX (concurrency 8):
it receives one message on topic "ping" (`durable.recv`), runs the step `note` (which
records a side effect, as tests/reliability/flow.py's steps do, step number 1), and
returns the message doubled. The process sends message i to PREFIX-i from outside any
workflow (`durable.send`, whose generated idempotency key makes its retries deliver once),
one every `--pace` seconds, so the sends span the fault. It prints one JSON line per
workflow ({"id", "result"} or {"id", "error"}), then "done".
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import durable
from tests.reliability import flow

TOPIC = "ping"


@durable.step(name="reliability.mailbox.note")
def note(message: int) -> int:
    flow.record_side_effect(durable.current_workflow_id() or "", 1)
    return message * 2


@durable.workflow(name="reliability.mailbox.relay")
def relay() -> int:
    message = durable.recv(TOPIC, timeout=600)
    if message is None:
        raise TimeoutError("no message")
    return int(note(message))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("database_url")
    parser.add_argument("prefix")
    parser.add_argument("count", type=int)
    parser.add_argument("--pace", type=float, default=0.05)
    args = parser.parse_args()
    flow.Settings.database_url, flow.Settings.process = args.database_url, "mailbox"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    durable.configure(args.target)
    queue = durable.Queue(args.prefix, concurrency=8)
    worker = durable.Worker([relay], name="mailbox", queues=[queue], lease_seconds=2.0)
    worker.start()
    handles: dict[str, Any] = {}
    for n in range(args.count):
        workflow_id = flow.workflow_id(args.prefix, n)
        with durable.set_workflow_id(workflow_id):
            handles[workflow_id] = queue.enqueue(relay)

    def send_all() -> None:
        for n in range(args.count):
            durable.send(flow.workflow_id(args.prefix, n), n, TOPIC)
            time.sleep(args.pace)

    sender = threading.Thread(target=send_all)
    sender.start()

    def wait(item: tuple[str, Any]) -> None:
        workflow_id, handle = item
        try:
            flow.emit({"id": workflow_id, "result": handle.result(timeout=300)})
        except Exception as exc:
            flow.emit({"id": workflow_id, "error": repr(exc)})

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(wait, handles.items()))
    sender.join()
    worker.stop(timeout=5)
    flow.emit("done")


if __name__ == "__main__":
    main()
