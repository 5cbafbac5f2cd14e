"""What an idle async workflow costs its worker process: memory and OS threads.

    .venv/bin/python -m bench.idle_workflows --coordinator 127.0.0.1:50051 [--workflows 2000]

Starts N `async def` workflows in this process (one event loop), each waiting in
`durable.aio.recv` for a message that comes only at the end; measures the process's RSS
and OS thread count (/proc/self/status) before and with all of them waiting, then sends
every message and checks each workflow finishes. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import durable
import durable.aio


@durable.workflow(name="bench.idle")
async def idle(wait_seconds: float) -> str:
    message = await durable.aio.recv("wake", timeout=wait_seconds)
    return "woken" if message is not None else "timed out"


def status_field(name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(name)


async def main(address: str, workflows: int) -> dict[str, float]:
    durable.aio.configure(address)
    # Warm-up: the channel, the Session stream, the step pool's imports.
    await durable.aio.start_workflow(idle, 0.0)
    before_kib, threads_before = status_field("VmRSS"), status_field("Threads")
    run = uuid.uuid4().hex[:8]
    handles = []
    for i in range(workflows):
        with durable.aio.set_workflow_id(f"idle-{run}-{i}"):
            handles.append(await durable.aio.start_workflow(idle, 600.0))
    # The tasks go on to their Recv calls in the background: measure once the RSS holds
    # still (two readings a second apart within 1 %), for at most a minute.
    deadline = time.monotonic() + 60
    last = status_field("VmRSS")
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = status_field("VmRSS")
        if abs(now - last) <= last / 100:
            break
        last = now
    with_kib, threads_with = status_field("VmRSS"), status_field("Threads")
    await asyncio.gather(*(durable.aio.send(h.workflow_id, 1, topic="wake") for h in handles))
    results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
    if results.count("woken") != workflows:
        raise RuntimeError(f"only {results.count('woken')} of {workflows} were woken")
    return {
        "workflows": workflows,
        "rss_before_mib": before_kib / 1024,
        "rss_idle_mib": with_kib / 1024,
        "kib_per_idle_workflow": (with_kib - before_kib) / workflows,
        "threads_before": threads_before,
        "threads_idle": threads_with,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--workflows", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.coordinator, args.workflows))))
