"""Our side of bench/run.py's `async_*` scenarios: the SDK's async face (`durable.aio`).

    .venv/bin/python -m bench.async_side SCENARIO ADDRESS_A ADDRESS_B [--quick]

bench/run.py runs this once per scenario and round, in a process of its own (as it runs
bench/dbos_worker.py for DBOS), against the two coordinators it started (separate
processes already): so this process's OS threads and resident set are the SDK's alone,
counted from a fresh start, as DBOS's are in its worker. Every workflow runs on one event
loop, one `asyncio.run` per scenario: `async def` workflows and steps, started with
`await durable.aio.start_workflow(...)` (a task of the loop) and awaited with
`await handle.result()`, events through `durable.aio.set_event` / `durable.aio.get_event`.
Prints one line `BENCH_RESULT {json}` on stdout, shaped like the sync scenarios' results.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import durable
import durable.aio
from durable._aio.client import default_client

QUICK = "--quick" in sys.argv


def n(full: int, quick: int) -> int:
    return quick if QUICK else full


STEP_SAMPLES: list[float] = []
EVENT_SENT: dict[int, float] = {}
# The reader and the publisher share the event loop: the handshake is an asyncio.Event made
# inside the scenario's asyncio.run (so it belongs to that loop).
EVENT_READY: list[asyncio.Event] = []


@durable.step(name="bench.async.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="bench.async.sequential")
async def sequential(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        await noop(i)
        STEP_SAMPLES.append(time.perf_counter() - start)


@durable.workflow(name="bench.async.one_step")
async def one_step() -> int:
    return int(await noop(1))


@durable.workflow(name="bench.async.ten_steps")
async def ten_steps() -> int:
    for i in range(10):
        await noop(i)
    return 10


@durable.workflow(name="bench.async.publisher")
async def publisher(rounds: int) -> None:
    ready = EVENT_READY[0]
    for i in range(rounds):
        await asyncio.wait_for(ready.wait(), timeout=30)
        ready.clear()
        await asyncio.sleep(0.005)  # let the reader's GetEvent reach the coordinator and wait
        EVENT_SENT[i] = time.perf_counter()
        await durable.aio.set_event(f"k{i}", i)


async def async_step_latency(a: str, b: str) -> dict[str, Any]:
    await (await durable.aio.start_workflow(sequential, 20)).result(timeout=30)  # warm-up
    STEP_SAMPLES.clear()
    await (await durable.aio.start_workflow(sequential, 100)).result(timeout=60)
    return {"samples_s": list(STEP_SAMPLES)}


async def async_start_result(a: str, b: str) -> dict[str, Any]:
    for _ in range(5):
        await (await durable.aio.start_workflow(one_step)).result(timeout=10)
    samples = []
    for _ in range(n(200, 40)):
        start = time.perf_counter()
        await (await durable.aio.start_workflow(one_step)).result(timeout=10)
        samples.append(time.perf_counter() - start)
    return {"samples_s": samples}


async def _delivery(reader: durable.aio.AsyncClient) -> list[float]:
    rounds = n(200, 40)
    EVENT_READY[:] = [asyncio.Event()]
    workflow_id = f"events-{uuid.uuid4().hex}"
    with durable.aio.set_workflow_id(workflow_id):
        handle = await durable.aio.start_workflow(publisher, rounds)
    samples = []
    for i in range(rounds):
        EVENT_READY[0].set()
        value = await durable.aio.get_event(workflow_id, f"k{i}", timeout=10, client=reader)
        arrived = time.perf_counter()
        if value != i:
            raise RuntimeError(f"round {i}: got {value!r}")
        samples.append(arrived - EVENT_SENT[i])
    await handle.result(timeout=30)
    return samples[1:]  # the first round includes setting up the reader's channel


async def async_event_delivery(a: str, b: str) -> dict[str, Any]:
    # The workflow runs through the default client (coordinator A); the reader is a client
    # of its own on A, then on B, as in the sync scenario.
    async with durable.aio.AsyncClient(a) as same_client:
        same = await _delivery(same_client)
    async with durable.aio.AsyncClient(b) as other_client:
        across = await _delivery(other_client)
    return {"samples_s": same, "across_coordinators_samples_s": across}


async def run_ten_steps(workflows: int) -> float:
    """Start `workflows` ten-step workflows at once (the starts concurrent, as an asyncio
    caller would issue them), then await every result: the elapsed seconds."""
    await (await durable.aio.start_workflow(ten_steps)).result(timeout=10)  # warm-up
    start = time.perf_counter()
    handles = await asyncio.gather(
        *(durable.aio.start_workflow(ten_steps) for _ in range(workflows))
    )
    results = await asyncio.gather(*(handle.result(timeout=600) for handle in handles))
    elapsed = time.perf_counter() - start
    if results != [10] * workflows:
        raise RuntimeError(f"unexpected results {sorted(set(map(repr, results)))}")
    return elapsed


async def async_throughput(a: str, b: str) -> dict[str, Any]:
    workflows = n(200, 50)
    elapsed = await run_ten_steps(workflows)
    return {"workflows": workflows, "steps": workflows * 10, "elapsed_s": elapsed}


def os_threads() -> int:
    """This process's OS threads (the kernel's count, /proc/self/status `Threads:`)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no Threads: line in /proc/self/status")


class ThreadPeak:
    """Samples the process's thread count every `interval` seconds from a thread of its
    own (counted too) and keeps the peaks: the kernel's count and Python's. The same
    sampler as bench/dbos_worker.py's."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.os_peak = 0
        self.python_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-peak", daemon=True)

    def _sample(self) -> None:
        self.os_peak = max(self.os_peak, os_threads())
        self.python_peak = max(self.python_peak, threading.active_count())

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


async def async_throughput_2000(a: str, b: str) -> dict[str, Any]:
    workflows = n(2000, 400)
    before = os_threads()  # before the channel exists: the bare interpreter
    with ThreadPeak() as peak:
        elapsed = await run_ten_steps(workflows)
    return {
        "workflows": workflows,
        "steps": workflows * 10,
        "elapsed_s": elapsed,
        # /proc/self/status Threads: of this process alone (the coordinators are other
        # processes), the sampler's own thread and gRPC's included
        "threads_peak": peak.os_peak,
        "threads_at_start": before,
        "python_threads_peak": peak.python_peak,  # threading.active_count()
        # VmHWM, the peak resident set of this process's own memory since it started. Not
        # ru_maxrss: Linux carries that over exec from the forked copy of the parent, so
        # it reported bench.run's own peak (392 MiB for both sides in one run).
        "rss_peak_mib": peak_rss_kib() / 1024,
    }


SCENARIOS: dict[str, Callable[[str, str], Awaitable[dict[str, Any]]]] = {
    "async_step_latency": async_step_latency,
    "async_start_result": async_start_result,
    "async_event_delivery": async_event_delivery,
    "async_throughput": async_throughput,
    "async_throughput_2000": async_throughput_2000,
}


async def run(scenario: str, a: str, b: str) -> dict[str, Any]:
    try:
        return await SCENARIOS[scenario](a, b)
    finally:
        await default_client().close()


def peak_rss_kib() -> int:
    """This process's peak resident set (/proc/self/status `VmHWM:`), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM: line in /proc/self/status")


def main() -> None:
    scenario, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
    if scenario not in SCENARIOS:
        raise SystemExit(f"unknown scenario {scenario!r}")
    durable.aio.configure(a)
    result = asyncio.run(run(scenario, a, b))
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
