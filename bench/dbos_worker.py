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
"""

from __future__ import annotations

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
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        DBOS.destroy(destroy_registry=False)
    result["dbos_version"] = "3.4.0"
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
