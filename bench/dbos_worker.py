# mypy: ignore-errors
# (This script runs in bench/.venv-dbos, where dbos is installed; the project's venv, which
# mypy checks bench/ with, deliberately has neither dbos nor its dependencies.)
"""The DBOS side of bench/run.py, run with bench/.venv-dbos/bin/python (DBOS Transact 3.4.0).

    bench/.venv-dbos/bin/python bench/dbos_worker.py SCENARIO DATABASE_URL [--quick]

Launches DBOS on DATABASE_URL (a fresh database the caller created), runs one scenario and
prints one line `BENCH_RESULT {json}` on stdout. It imports only DBOS and the standard
library (and sqlalchemy, a dependency of DBOS): it runs in DBOS's own venv, never in the
project's, and nothing in the project imports it. Each scenario mirrors the one of the same
name in bench/run.py (see bench/README.md).

The `async_*` scenarios are the same shapes through DBOS's asyncio API: `async def`
workflows and steps, started with `await DBOS.start_workflow_async(...)`, awaited with
`await handle.get_result()`, events through `DBOS.set_event_async` / `DBOS.get_event_async`,
all on one event loop (one `asyncio.run` per scenario). DBOS runs such a workflow as a task
on the caller's loop; each of its database calls (start, step record, result) goes through
`asyncio.to_thread` to DBOS's executor, a thread pool with no bound on its size.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

QUICK = "--quick" in sys.argv


def n(full: int, quick: int) -> int:
    return quick if QUICK else full


@DBOS.step()
def noop(i: int) -> int:
    return i


STEP_SAMPLES: list[float] = []


@DBOS.workflow()
def sequential(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        noop(i)
        STEP_SAMPLES.append(time.perf_counter() - start)


@DBOS.workflow()
def one_step() -> int:
    return noop(1)


@DBOS.workflow()
def ten_steps() -> int:
    for i in range(10):
        noop(i)
    return 10


REPLAY_RUNS = [0]
BODY_DONE = [0.0]


@DBOS.step()
def counted(i: int) -> int:
    REPLAY_RUNS[0] += 1
    return i


@DBOS.workflow()
def many_steps(steps: int) -> int:
    for i in range(steps):
        counted(i)
    BODY_DONE[0] = time.perf_counter()
    return steps


EVENT_READY = threading.Event()
EVENT_SENT: dict[int, float] = {}


@DBOS.workflow()
def publisher(rounds: int) -> None:
    for i in range(rounds):
        if not EVENT_READY.wait(timeout=30):
            raise RuntimeError("reader never got ready")
        EVENT_READY.clear()
        time.sleep(0.005)  # let the reader's get_event register its waiter
        EVENT_SENT[i] = time.perf_counter()
        DBOS.set_event(f"k{i}", i)


def step_latency() -> dict[str, Any]:
    sequential(20)  # warm-up: connections, prepared statements
    STEP_SAMPLES.clear()
    sequential(100)
    return {"samples_s": list(STEP_SAMPLES)}


def start_result() -> dict[str, Any]:
    for _ in range(5):
        DBOS.start_workflow(one_step).get_result()
    samples = []
    for _ in range(n(200, 40)):
        start = time.perf_counter()
        DBOS.start_workflow(one_step).get_result()
        samples.append(time.perf_counter() - start)
    return {"samples_s": samples}


def event_delivery() -> dict[str, Any]:
    rounds = n(200, 40)
    workflow_id = f"events-{uuid.uuid4().hex}"
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(publisher, rounds)
    samples = []
    for i in range(rounds):
        EVENT_READY.set()
        value = DBOS.get_event(workflow_id, f"k{i}", timeout_seconds=10)
        arrived = time.perf_counter()
        if value != i:
            raise RuntimeError(f"round {i}: got {value!r}")
        samples.append(arrived - EVENT_SENT[i])
    handle.get_result()
    return {"samples_s": samples[1:]}


def throughput() -> dict[str, Any]:
    workflows = n(200, 50)
    DBOS.start_workflow(ten_steps).get_result()  # warm-up
    start = time.perf_counter()
    handles = [DBOS.start_workflow(ten_steps) for _ in range(workflows)]
    for handle in handles:
        handle.get_result()
    elapsed = time.perf_counter() - start
    return {"workflows": workflows, "steps": workflows * 10, "elapsed_s": elapsed}


def replay(database_url: str) -> dict[str, Any]:
    import sqlalchemy as sa  # DBOS's own dependency

    steps = 1000
    workflow_id = f"replay-{uuid.uuid4().hex}"
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(many_steps, steps).get_result()
    samples, body_samples = [], []
    for _ in range(n(5, 2)):
        # Make it look like a workflow whose process died after its last step: PENDING,
        # all steps recorded. DBOS's recovery (what it runs at launch and for a dead
        # executor) then runs it again, replaying each step from its record.
        engine = sa.create_engine(sa.make_url(database_url).set(drivername="postgresql+psycopg"))
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE dbos.workflow_status SET status = 'PENDING', output = NULL "
                    "WHERE workflow_uuid = :id"
                ),
                {"id": workflow_id},
            )
        engine.dispose()
        REPLAY_RUNS[0] = 0
        start = time.perf_counter()
        handles = DBOS._recover_pending_workflows()
        if [h.get_workflow_id() for h in handles] != [workflow_id]:
            raise RuntimeError(f"recovered {handles!r}")
        result = handles[0].get_result()
        samples.append(time.perf_counter() - start)
        body_samples.append(BODY_DONE[0] - start)
        if result != steps or REPLAY_RUNS[0] != 0:
            raise RuntimeError(f"replay ran {REPLAY_RUNS[0]} steps again, result {result!r}")
    # samples_s: recovery call -> result in hand (DBOS's handle polls for the result);
    # body_samples_s: recovery call -> the replayed body has passed its last step.
    return {"samples_s": body_samples, "to_result_s": samples, "steps": steps}


def timeout_accuracy() -> dict[str, Any]:
    errors = []
    for _ in range(n(10, 3)):
        start = time.perf_counter()
        value = DBOS.get_event(f"missing-{uuid.uuid4().hex}", "nothing", timeout_seconds=1)
        errors.append(time.perf_counter() - start - 1.0)
        if value is not None:
            raise RuntimeError(f"got {value!r}")
    return {"errors_s": errors}


# --- the asyncio API ------------------------------------------------------------------------


@DBOS.step()
async def noop_async(i: int) -> int:
    return i


@DBOS.workflow()
async def sequential_async(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        await noop_async(i)
        STEP_SAMPLES.append(time.perf_counter() - start)


@DBOS.workflow()
async def one_step_async() -> int:
    return await noop_async(1)


@DBOS.workflow()
async def ten_steps_async() -> int:
    for i in range(10):
        await noop_async(i)
    return 10


# The reader and the publisher share one event loop: the handshake is an asyncio.Event,
# made inside the scenario's asyncio.run (so it belongs to that loop).
ASYNC_EVENT_READY: list[asyncio.Event] = []


@DBOS.workflow()
async def publisher_async(rounds: int) -> None:
    ready = ASYNC_EVENT_READY[0]
    for i in range(rounds):
        await asyncio.wait_for(ready.wait(), timeout=30)
        ready.clear()
        await asyncio.sleep(0.005)  # let the reader's get_event_async register its waiter
        EVENT_SENT[i] = time.perf_counter()
        await DBOS.set_event_async(f"k{i}", i)


async def async_step_latency() -> dict[str, Any]:
    await (await DBOS.start_workflow_async(sequential_async, 20)).get_result()  # warm-up
    STEP_SAMPLES.clear()
    await (await DBOS.start_workflow_async(sequential_async, 100)).get_result()
    return {"samples_s": list(STEP_SAMPLES)}


async def async_start_result() -> dict[str, Any]:
    for _ in range(5):
        await (await DBOS.start_workflow_async(one_step_async)).get_result()
    samples = []
    for _ in range(n(200, 40)):
        start = time.perf_counter()
        await (await DBOS.start_workflow_async(one_step_async)).get_result()
        samples.append(time.perf_counter() - start)
    return {"samples_s": samples}


async def async_event_delivery() -> dict[str, Any]:
    rounds = n(200, 40)
    ASYNC_EVENT_READY[:] = [asyncio.Event()]
    workflow_id = f"events-{uuid.uuid4().hex}"
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(publisher_async, rounds)
    samples = []
    for i in range(rounds):
        ASYNC_EVENT_READY[0].set()
        value = await DBOS.get_event_async(workflow_id, f"k{i}", timeout_seconds=10)
        arrived = time.perf_counter()
        if value != i:
            raise RuntimeError(f"round {i}: got {value!r}")
        samples.append(arrived - EVENT_SENT[i])
    await handle.get_result()
    return {"samples_s": samples[1:]}


async def run_ten_steps_async(workflows: int) -> float:
    """Start `workflows` ten-step workflows at once (the starts themselves concurrent, as
    an asyncio caller would issue them), then await every result: the elapsed seconds."""
    await (await DBOS.start_workflow_async(ten_steps_async)).get_result()  # warm-up
    start = time.perf_counter()
    handles = await asyncio.gather(
        *(DBOS.start_workflow_async(ten_steps_async) for _ in range(workflows))
    )
    results = await asyncio.gather(*(handle.get_result() for handle in handles))
    elapsed = time.perf_counter() - start
    if results != [10] * workflows:
        raise RuntimeError(f"unexpected results {sorted(set(map(repr, results)))}")
    return elapsed


async def async_throughput() -> dict[str, Any]:
    workflows = n(200, 50)
    elapsed = await run_ten_steps_async(workflows)
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
    own (counted too) and keeps the peaks: the kernel's count and Python's."""

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


async def async_throughput_2000() -> dict[str, Any]:
    workflows = n(2000, 400)
    with ThreadPeak() as peak:
        elapsed = await run_ten_steps_async(workflows)
    return {
        "workflows": workflows,
        "steps": workflows * 10,
        "elapsed_s": elapsed,
        # /proc/self/status Threads: (every OS thread, DBOS's executor threads included)
        "threads_peak": peak.os_peak,
        "python_threads_peak": peak.python_peak,  # threading.active_count()
        # VmHWM, the peak resident set of this process's own memory since it started. Not
        # ru_maxrss: Linux carries that over exec from the forked copy of the parent, so
        # it reported bench.run's own peak (392 MiB for both sides in one run).
        "rss_peak_mib": peak_rss_kib() / 1024,
    }


ASYNC_SCENARIOS = {
    "async_step_latency": async_step_latency,
    "async_start_result": async_start_result,
    "async_event_delivery": async_event_delivery,
    "async_throughput": async_throughput,
    "async_throughput_2000": async_throughput_2000,
}


def peak_rss_kib() -> int:
    """This process's peak resident set (/proc/self/status `VmHWM:`), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM: line in /proc/self/status")


def main() -> None:
    scenario, database_url = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        if scenario == "step_latency":
            result = step_latency()
        elif scenario == "start_result":
            result = start_result()
        elif scenario == "event_delivery":
            result = event_delivery()
        elif scenario == "throughput":
            result = throughput()
        elif scenario == "replay":
            result = replay(database_url)
        elif scenario == "timeout_accuracy":
            result = timeout_accuracy()
        elif scenario in ASYNC_SCENARIOS:
            result = asyncio.run(ASYNC_SCENARIOS[scenario]())
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        DBOS.destroy(destroy_registry=False)
    result["dbos_version"] = "3.4.0"
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
