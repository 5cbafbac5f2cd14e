"""Durable sleep: the Sleep RPC records the wake-up time once and answers what is left of it;
durable.sleep sleeps only for that, so a workflow whose worker died mid-sleep wakes at the
time first recorded, not a whole sleep later."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    duration,
    error_info,
    eventually,
    finish,
    new_id,
    payload,
    rpc_error,
    start_pending,
)
from tests.worker_harness import Workers, workers_for
from tests.worker_process import SLEEP_SECONDS


def start(stub: Stub, workflow_id: str | None = None, name: str = "sleep.flow") -> str:
    return start_pending(stub, workflow_id, name)


def sleep(stub: Stub, workflow_id: str, step_id: int, seconds: float) -> pb.SleepResponse:
    return stub.Sleep(
        pb.SleepRequest(workflow_id=workflow_id, step_id=step_id, duration=duration(seconds)),
        timeout=RPC_TIMEOUT,
    )


def seconds(value: Any) -> float:
    return float(value.ToNanoseconds()) / 1e9


# --- the RPC -------------------------------------------------------------------------------


def test_sleep_records_its_wake_up_time_once(stub: Stub) -> None:
    workflow_id = start(stub)
    before = time.time()
    first = sleep(stub, workflow_id, 1, 3600)
    after = time.time()
    assert not first.already_recorded
    step = first.step
    assert (step.step_id, step.kind, step.name) == (1, pb.STEP_KIND_SLEEP, "sleep")
    assert before + 3600 - 1 <= seconds(step.deadline) <= after + 3600 + 1
    assert 3600 - PROMPT < seconds(first.remaining) <= 3600

    # A replay (even asking for another duration) keeps the recorded wake-up time.
    replay = sleep(stub, workflow_id, 1, 5)
    assert replay.already_recorded
    assert replay.step == step
    assert seconds(replay.remaining) <= seconds(first.remaining)
    assert seconds(replay.remaining) > 3600 - PROMPT


def test_a_fork_keeps_the_recorded_wake_up_times_and_timeouts(stub: Stub) -> None:
    """A fork copies the steps before its start step whole: a SLEEP keeps its wake-up time
    (so the fork's replay sleeps only what is left of it), a timed-out RECV its flag."""
    workflow_id = start(stub)
    slept = sleep(stub, workflow_id, 1, 3600).step
    received = stub.Recv(
        pb.RecvRequest(workflow_id=workflow_id, step_id=2, timeout=duration(0)),
        timeout=RPC_TIMEOUT,
    ).step
    assert received.timed_out
    fork_id = stub.ForkWorkflow(
        pb.ForkWorkflowRequest(workflow_id=workflow_id, start_step_id=3), timeout=RPC_TIMEOUT
    ).workflow.workflow_id

    copied = stub.ListSteps(pb.ListStepsRequest(workflow_id=fork_id), timeout=RPC_TIMEOUT).steps
    assert [(s.deadline, s.timed_out) for s in copied] == [
        (slept.deadline, False),
        (received.deadline, True),
    ]
    executor = new_id("exec")
    stub.Heartbeat(
        pb.HeartbeatRequest(executor_id=executor, workflow_names=["sleep.flow"]),
        timeout=RPC_TIMEOUT,
    )
    stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=fork_id, name="sleep.flow", executor_id=executor),
        timeout=RPC_TIMEOUT,
    )
    replay = stub.Sleep(
        pb.SleepRequest(workflow_id=fork_id, step_id=1, duration=duration(5), executor_id=executor),
        timeout=RPC_TIMEOUT,
    )
    assert replay.already_recorded and replay.step.deadline == slept.deadline
    assert seconds(replay.remaining) > 3600 - PROMPT


def test_remaining_counts_down_to_zero(stub: Stub) -> None:
    workflow_id = start(stub)
    first = sleep(stub, workflow_id, 1, 0.5)
    wake_up = seconds(first.step.deadline)
    eventually(lambda: time.time() > wake_up + 0.05, timeout=PROMPT)
    assert sleep(stub, workflow_id, 1, 0.5).remaining.ToNanoseconds() == 0
    zero = sleep(stub, workflow_id, 2, 0)
    assert zero.remaining.ToNanoseconds() == 0 and not zero.already_recorded


def test_sleep_is_refused_for_a_finished_missing_or_mismatched_workflow(stub: Stub) -> None:
    workflow_id = start(stub)
    stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=1, name="work", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    error = rpc_error(lambda: sleep(stub, workflow_id, 1, 1))
    assert error_info(error).reason == "STEP_NAME_MISMATCH"
    sleep(stub, workflow_id, 2, 1)
    finish(stub, workflow_id)
    # A recorded sleep still replays; a new one is refused.
    assert sleep(stub, workflow_id, 2, 1).already_recorded
    error = rpc_error(lambda: sleep(stub, workflow_id, 3, 1))
    assert error_info(error).reason == "WORKFLOW_NOT_PENDING"
    error = rpc_error(lambda: sleep(stub, new_id(), 1, 1))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_sleep_rejects_bad_input(stub: Stub) -> None:
    workflow_id = start(stub)

    def invalid(request: pb.SleepRequest, field: str) -> None:
        error = rpc_error(lambda: stub.Sleep(request, timeout=RPC_TIMEOUT))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).metadata["field"] == field

    invalid(pb.SleepRequest(workflow_id=workflow_id, step_id=1), "duration")
    invalid(pb.SleepRequest(workflow_id=workflow_id, step_id=1, duration=duration(-1)), "duration")
    year = 365 * 24 * 3600
    invalid(
        pb.SleepRequest(workflow_id=workflow_id, step_id=1, duration=duration(year + 1)),
        "duration",
    )
    invalid(pb.SleepRequest(workflow_id=workflow_id, duration=duration(1)), "step_id")
    invalid(pb.SleepRequest(step_id=1, duration=duration(1)), "workflow_id")


# --- the SDK -------------------------------------------------------------------------------


class Crash(BaseException):
    """Stops a workflow run without recording its end, like a process dying."""


def test_sdk_sleep_sleeps_and_a_replay_of_a_past_sleep_does_not(sdk: None) -> None:
    crashed: list[str] = []

    @durable.workflow(name="sleep.nap")
    def nap() -> str:
        durable.sleep(0.5)
        if not crashed:
            crashed.append("once")
            raise Crash
        return "rested"

    workflow_id = new_id("nap")
    began = time.monotonic()
    with durable.set_workflow_id(workflow_id), pytest.raises(Crash):
        nap()
    assert time.monotonic() - began >= 0.5
    began = time.monotonic()
    with durable.set_workflow_id(workflow_id):
        assert nap() == "rested"
    assert time.monotonic() - began < 0.5  # the recorded wake-up time had passed
    steps = durable.list_steps(workflow_id)
    assert [(s.kind, s.name) for s in steps] == [("sleep", "sleep")]
    assert steps[0].deadline is not None


def test_sdk_resumed_sleep_sleeps_only_what_is_left(stub: Stub, sdk: None) -> None:
    @durable.workflow(name="sleep.resumed")
    def resumed() -> str:
        durable.sleep(3.0)
        return "awake"

    workflow_id = start(stub, name="sleep.resumed")
    # The first run recorded its 3 s sleep and died; resume it 2 s later.
    wake_up = seconds(sleep(stub, workflow_id, 1, 3.0).step.deadline)
    eventually(lambda: time.time() >= wake_up - 1.0, timeout=PROMPT)
    with durable.set_workflow_id(workflow_id):
        assert resumed() == "awake"
    woke = time.time()
    assert wake_up - 0.05 <= woke < wake_up + 0.9


def test_sdk_sleep_outside_a_workflow_just_sleeps(sdk: None) -> None:
    began = time.monotonic()
    durable.sleep(0.1)
    assert time.monotonic() - began >= 0.1
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            durable.sleep(bad)


# --- a real worker restarted mid-sleep -----------------------------------------------------


@pytest.fixture
def workers(coordinator: Coordinator, tmp_path: Path) -> Iterator[Workers]:
    with workers_for(coordinator.address, tmp_path) as pool:
        yield pool


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


def test_a_sleep_survives_a_worker_restart_and_sleeps_only_the_remainder(
    workers: Workers, client: durable.Client
) -> None:
    # A long lease: only the restarted worker (same name) takes the workflow back, at once.
    before = workers.spawn("sleepy", lease=60.0)
    before.wait_ready()
    workflow_id = new_id("sleeper")
    started = time.time()
    before.start("sleeper", workflow_id)

    def recorded_sleep() -> pb.Step | None:
        steps = client.list_steps(workflow_id).steps
        return next((s for s in steps if s.kind == pb.STEP_KIND_SLEEP), None)

    step = eventually(recorded_sleep, timeout=20)
    wake_up = seconds(step.deadline)
    assert SLEEP_SECONDS - 1 <= wake_up - started <= SLEEP_SECONDS + PROMPT
    before.kill()  # mid-sleep
    # Restart when about half the sleep has passed: a sleep started over would end then
    # plus a whole SLEEP_SECONDS, well after the recorded wake-up time.
    eventually(lambda: time.time() >= wake_up - SLEEP_SECONDS / 2, timeout=SLEEP_SECONDS)
    restarted_at = time.time()
    workers.spawn("sleepy", lease=60.0).wait_ready()
    ready_at = time.time()

    result = durable.retrieve_workflow(workflow_id, client=client).result(timeout=30)
    assert result == ["1:sleepy", "2:sleepy"]
    effects = workers.effects
    assert effects.counts(workflow_id) == Counter({"step-1": 1, "step-2": 1})
    woke = next(e.time for e in effects.all(workflow_id) if e.label == "step-2")
    print(f"\nrecorded wake-up -> step after the sleep: {woke - wake_up:+.2f}s")
    assert woke >= wake_up - 0.05
    # Woke at the recorded time (or as soon as the restarted worker was up, if later)...
    assert woke < max(wake_up, ready_at) + 1.5
    # ...and not a whole sleep after the restart.
    assert woke < restarted_at + SLEEP_SECONDS - 1
    # Exactly one SLEEP step: the restarted worker replayed it, not recorded another.
    kinds = [s.kind for s in client.list_steps(workflow_id).steps]
    assert kinds.count(pb.STEP_KIND_SLEEP) == 1
    assert json.loads(client.get_workflow(workflow_id).output.data) == result
