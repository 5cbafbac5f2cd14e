"""GetEvent from a running workflow (`caller`): the read is checkpointed as the caller's
GET_EVENT step with its deadline, so a replay returns the same value (or timeout) at once,
even after the event changed, and a retried wait keeps its first deadline."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    WAIT_PARKED_SQL,
    Activity,
    Stub,
    duration,
    error_info,
    finish,
    new_id,
    payload,
    rpc_error,
    set_event,
    start_pending,
    value_of,
)


def start(stub: Stub, workflow_id: str | None = None, name: str = "reader.flow") -> str:
    return start_pending(stub, workflow_id, name)


def read(
    stub: Stub,
    workflow_id: str,
    key: str,
    caller: str,
    step_id: int,
    timeout: float,
    *,
    deadline: float | None = None,
    **extra: Any,
) -> list[pb.GetEventResponse]:
    request = pb.GetEventRequest(
        workflow_id=workflow_id,
        key=key,
        timeout=duration(timeout),
        caller=pb.StepRef(workflow_id=caller, step_id=step_id),
        **extra,
    )
    return list(stub.GetEvent(request, timeout=deadline or timeout + RPC_TIMEOUT))


def recorded(stub: Stub, workflow_id: str, step_id: int) -> pb.Step:
    steps = stub.ListSteps(pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    return next(s for s in steps.steps if s.step_id == step_id)


def test_a_replayed_read_returns_the_first_value_at_once_after_the_event_changed(
    stub: Stub,
) -> None:
    target, reader = start(stub), start(stub)
    set_event(stub, target, 1, "status", "first")

    [first] = read(stub, target, "status", reader, 1, 30)
    assert value_of(first.event.value) == "first" and first.event.version == 1
    step = recorded(stub, reader, 1)
    assert (step.kind, step.name, step.timed_out) == (pb.STEP_KIND_GET_EVENT, "status", False)
    assert value_of(step.output) == "first" and step.HasField("deadline")

    set_event(stub, target, 2, "status", "second")
    began = time.monotonic()
    [replay] = read(stub, target, "status", reader, 1, 30)
    assert time.monotonic() - began < PROMPT
    assert value_of(replay.event.value) == "first" and replay.event.version == 0
    # A new step reads the current value.
    [later] = read(stub, target, "status", reader, 2, 30)
    assert value_of(later.event.value) == "second"


def test_a_read_waits_for_the_value_and_is_woken(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    target, reader = new_id("not-started"), start(stub)
    since = activity.now()
    waiting = pool.submit(read, stub, target, "ready", reader, 1, 60)
    activity.wait_parked(since, WAIT_PARKED_SQL)
    start(stub, target)
    set_event(stub, target, 1, "ready", True)
    [message] = waiting.result(timeout=PROMPT)
    assert value_of(message.event.value) is True
    assert value_of(recorded(stub, reader, 1).output) is True


def test_a_timeout_is_recorded_and_replayed_even_once_the_value_exists(stub: Stub) -> None:
    target, reader = start(stub), start(stub)
    [first] = read(stub, target, "late", reader, 1, 0.2)
    assert first.HasField("timed_out")
    step = recorded(stub, reader, 1)
    assert step.timed_out and value_of(step.output) is None

    set_event(stub, target, 1, "late", "now here")
    [replay] = read(stub, target, "late", reader, 1, 30)
    assert replay.HasField("timed_out")


def test_a_retried_read_keeps_its_first_deadline(stub: Stub) -> None:
    target, reader = start(stub), start(stub)
    began = time.time()
    error = rpc_error(lambda: read(stub, target, "never", reader, 1, 2.0, deadline=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    [message] = read(stub, target, "never", reader, 1, 60)
    assert message.HasField("timed_out")
    assert time.time() < began + 2.0 + PROMPT
    deadline = recorded(stub, reader, 1).deadline.ToNanoseconds() / 1e9
    assert began + 1.9 <= deadline <= began + 2.0 + PROMPT


def test_a_read_of_a_workflow_that_finished_without_the_value_ends_at_once(stub: Stub) -> None:
    target, reader = start(stub), start(stub)
    finish(stub, target)
    began = time.monotonic()
    [first] = read(stub, target, "missing", reader, 1, 30)
    assert time.monotonic() - began < PROMPT
    assert first.workflow_finished.status == pb.WORKFLOW_STATUS_SUCCESS
    assert recorded(stub, reader, 1).timed_out  # recorded as "no value"
    [replay] = read(stub, target, "missing", reader, 1, 30)
    assert replay.HasField("timed_out")


def test_a_read_from_a_workflow_that_may_not_record_it_is_refused(stub: Stub) -> None:
    target, reader = start(stub), start(stub)
    set_event(stub, target, 1, "k", 1)
    stub.RunStep(
        pb.RunStepRequest(workflow_id=reader, step_id=1, name="work", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    error = rpc_error(lambda: read(stub, target, "k", reader, 1, 1))
    assert error_info(error).reason == "STEP_NAME_MISMATCH"
    finish(stub, reader)
    error = rpc_error(lambda: read(stub, target, "k", reader, 2, 1))
    assert error_info(error).reason == "WORKFLOW_NOT_PENDING"
    error = rpc_error(lambda: read(stub, target, "k", new_id(), 1, 1))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_a_checkpointed_read_rejects_bad_input(stub: Stub) -> None:
    target, reader = start(stub), start(stub)

    def invalid(field: str, **fields: Any) -> None:
        request = pb.GetEventRequest(workflow_id=target, key="k", **fields)
        error = rpc_error(lambda: list(stub.GetEvent(request, timeout=RPC_TIMEOUT)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).metadata["field"] == field

    caller = pb.StepRef(workflow_id=reader, step_id=1)
    invalid("follow", caller=caller, follow=True)
    invalid("after_version", caller=caller, after_version=3)
    invalid("caller.step_id", caller=pb.StepRef(workflow_id=reader))
    invalid("caller.workflow_id", caller=pb.StepRef(step_id=1))
    invalid("caller.executor_id", caller=pb.StepRef(workflow_id=reader, step_id=1, executor_id="!"))
    invalid("timeout", caller=caller, timeout=duration(-1))


# --- the SDK -------------------------------------------------------------------------------


class Crash(BaseException):
    """Stops a workflow run without recording its end, like a process dying."""


def test_sdk_get_event_in_a_workflow_is_checkpointed(stub: Stub, sdk: None) -> None:
    target = start(stub)
    set_event(stub, target, 1, "price", 10)
    crashed: list[str] = []

    @durable.step
    def current_price() -> Any:
        # Inside a step: a plain read, not checkpointed.
        return durable.get_event(target, "price", timeout=0)

    @durable.workflow(name="reader.quote")
    def quote() -> list[Any]:
        seen = durable.get_event(target, "price", timeout=5)
        if not crashed:
            crashed.append("once")
            raise Crash
        return [seen, current_price(), durable.get_event(target, "absent", timeout=0.1)]

    workflow_id = new_id("quote")
    with durable.set_workflow_id(workflow_id), pytest.raises(Crash):
        quote()
    set_event(stub, target, 2, "price", 12)
    began = time.monotonic()
    with durable.set_workflow_id(workflow_id):
        assert quote() == [10, 12, None]
    assert time.monotonic() - began < PROMPT
    steps = durable.list_steps(workflow_id)
    assert [(s.kind, s.name, s.timed_out) for s in steps] == [
        ("get_event", "price", False),
        ("step", current_price.__qualname__, False),
        ("get_event", "absent", True),
    ]
