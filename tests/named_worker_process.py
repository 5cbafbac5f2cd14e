"""A worker process for the start-by-name tests: it registers workflows that the test
process never imports, so the test starts them by name only.

    python -m tests.named_worker_process ADDRESS FACE

FACE "sync" runs a durable.Worker with the plain workflows, "async" a durable.aio.Worker
with the `async def` ones; both serve the queue "named-queue". Prints "ready EXECUTOR_ID"
once the worker is registered, and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import durable
import durable.aio

QUEUE = durable.Queue("named-queue")


@durable.step
def charge(order: dict[str, Any]) -> int:
    return int(sum(item["price"] * item["qty"] for item in order["items"]))


@durable.workflow(name="orders.process")
def process(order: dict[str, Any], *, express: bool = False) -> dict[str, Any]:
    total = charge(order)
    durable.set_event("status", "charged")
    return {"order": order["id"], "total": total, "express": express}


@durable.workflow(name="orders.parent")
def parent(order: dict[str, Any]) -> dict[str, Any]:
    # A child started by name from inside a workflow: a worker claims it, not this run.
    child = durable.start_workflow("orders.process", order, express=True)
    return {"child": child.workflow_id, "result": child.result()}


@durable.step
async def acharge(order: dict[str, Any]) -> int:
    return int(sum(item["price"] * item["qty"] for item in order["items"]))


@durable.workflow(name="orders.aprocess")
async def aprocess(order: dict[str, Any], *, express: bool = False) -> dict[str, Any]:
    total = await acharge(order)
    await durable.aio.set_event("status", "charged")
    return {"order": order["id"], "total": total, "express": express, "face": "async"}


@durable.workflow(name="orders.aparent")
async def aparent(order: dict[str, Any]) -> dict[str, Any]:
    child = await durable.aio.start_workflow("orders.process", order)
    return {"child": child.workflow_id, "result": await child.result()}


async def run_async(address: str) -> None:
    durable.aio.configure(address)
    worker = durable.aio.Worker([aprocess, aparent], lease_seconds=2, queues=[QUEUE])
    await worker.start()
    print(f"ready {worker.executor_id}", flush=True)
    await worker.run(shutdown_timeout=5)


def main() -> None:
    address, face = sys.argv[1:3]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if face == "async":
        asyncio.run(run_async(address))
        return
    durable.configure(address)
    worker = durable.Worker([process, parent], lease_seconds=2, queues=[QUEUE])
    worker.start()
    print(f"ready {worker.executor_id}", flush=True)
    worker.run_forever(shutdown_timeout=5)


if __name__ == "__main__":
    main()
