"""The SDK's management API (durable.list_workflows, get_workflow, list_steps, list_events,
cancel_workflow, resume_workflow, fork_workflow) against a real coordinator: plain Python
values back, never wire messages."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, new_id, payload

pytestmark = pytest.mark.usefixtures("sdk")


@durable.step
def shout(who: str) -> str:
    return who.upper()


@durable.workflow(name="management.greet")
def greet(who: str) -> str:
    durable.set_event("stage", "greeting")
    text = shout(who)
    durable.set_event("progress", 100)
    return text


@durable.workflow(name="management.fail")
def fail(reason: str) -> None:
    raise ValueError(reason)


class CountingClient(durable.Client):
    """A client that counts its ListWorkflows calls (pages)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.pages = 0

    def list_workflows(self, request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsResponse:
        self.pages += 1
        return super().list_workflows(request)


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


def run_greet(who: str = "ada") -> str:
    workflow_id = new_id("greet")
    with durable.set_workflow_id(workflow_id):
        assert greet(who) == who.upper()
    return workflow_id


def start(client: durable.Client, name: str, value: Any = None) -> str:
    workflow_id = new_id("mgmt")
    client.start_workflow(workflow_id, name, payload({"value": value}))
    return workflow_id


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


# --- get_workflow --------------------------------------------------------------------------


def test_a_finished_workflow_reads_back_as_plain_values() -> None:
    workflow_id = run_greet("ada")

    info = durable.get_workflow(workflow_id)

    assert isinstance(info, durable.WorkflowInfo)
    assert info.workflow_id == workflow_id
    assert info.name == "management.greet"
    assert info.status is durable.WorkflowStatus.SUCCESS
    assert info.input == {"args": ["ada"], "kwargs": {}}
    assert info.output == "ADA"
    assert info.error is None
    assert info.created_at.tzinfo is not None
    assert info.created_at <= info.updated_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert (info.executor_id, info.recovery_attempts) == (None, 0)
    assert (info.deadline, info.forked_from) == (None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]


def test_a_failed_workflow_carries_its_error() -> None:
    workflow_id = new_id("fail")
    with durable.set_workflow_id(workflow_id), pytest.raises(ValueError, match="boom"):
        fail("boom")

    info = durable.get_workflow(workflow_id)

    assert info.status is durable.WorkflowStatus.ERROR
    assert info.error == durable.FailureInfo("builtins.ValueError", "boom")
    assert (info.error.type, info.error.message) == ("builtins.ValueError", "boom")
    assert info.output is None


def test_a_workflow_timeout_shows_as_its_deadline(client: durable.Client) -> None:
    workflow_id = new_id("deadline")
    client.start_workflow(workflow_id, "management.slow", payload(None), timeout=3600)

    info = durable.get_workflow(workflow_id, client=client)

    assert info.status is durable.WorkflowStatus.PENDING
    assert info.deadline is not None
    # Both are stamped in the start's statement, a moment apart in either order.
    assert abs(info.deadline - info.created_at - timedelta(hours=1)) < timedelta(seconds=1)


# --- steps and events ----------------------------------------------------------------------


def test_steps_and_events_of_a_workflow() -> None:
    workflow_id = run_greet("bob")

    steps = durable.list_steps(workflow_id)

    assert [(s.step_id, s.kind, s.name) for s in steps] == [
        (1, "set_event", "stage"),
        (2, "step", "shout"),
        (3, "set_event", "progress"),
    ]
    shouted = steps[1]
    assert isinstance(shouted, durable.StepInfo)
    assert (shouted.output, shouted.error) == ("BOB", None)
    assert (shouted.attempts, shouted.failed_attempts) == (1, ())
    assert all(s.recorded_at.tzinfo is not None for s in steps)
    assert [s.recorded_at for s in steps] == sorted(s.recorded_at for s in steps)

    assert durable.list_events(workflow_id) == {"stage": "greeting", "progress": 100}


def test_a_retried_step_lists_every_failed_attempt(client: durable.Client) -> None:
    workflow_id = start(client, "management.retried")
    began = datetime.now(timezone.utc).replace(microsecond=0)
    for attempt in (1, 2):
        client.record_step_attempt(
            pb.RecordStepAttemptRequest(
                workflow_id=workflow_id,
                step_id=1,
                name="flaky",
                attempt=attempt,
                error=pb.Failure(type="builtins.TimeoutError", message=f"try {attempt}"),
                start_time=stamp(began + timedelta(seconds=attempt)),
                end_time=stamp(began + timedelta(seconds=attempt, milliseconds=500)),
            )
        )
    client.run_step(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=1,
            name="flaky",
            output=payload({"ok": True}),
            attempts=3,
            start_time=stamp(began + timedelta(seconds=3)),
        )
    )
    client.run_step(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=2,
            name="broken",
            error=pb.Failure(type="builtins.KeyError", message="'x'", details="trace"),
        )
    )

    flaky, broken = durable.list_steps(workflow_id, client=client)

    assert (flaky.output, flaky.error, flaky.attempts) == ({"ok": True}, None, 3)
    assert flaky.started_at == began + timedelta(seconds=3)
    assert flaky.failed_attempts == (
        durable.StepAttemptInfo(
            attempt=1,
            error=durable.FailureInfo("builtins.TimeoutError", "try 1"),
            started_at=began + timedelta(seconds=1),
            ended_at=began + timedelta(seconds=1, milliseconds=500),
        ),
        durable.StepAttemptInfo(
            attempt=2,
            error=durable.FailureInfo("builtins.TimeoutError", "try 2"),
            started_at=began + timedelta(seconds=2),
            ended_at=began + timedelta(seconds=2, milliseconds=500),
        ),
    )
    assert broken.output is None
    assert broken.error == durable.FailureInfo("builtins.KeyError", "'x'")
    assert (broken.attempts, broken.failed_attempts, broken.started_at) == (1, (), None)


def test_list_steps_pages_past_a_thousand_steps(client: durable.Client) -> None:
    workflow_id = start(client, "management.long")
    for step_id in range(1, 1003):
        client.run_step(
            pb.RunStepRequest(
                workflow_id=workflow_id, step_id=step_id, name="s", output=payload(step_id)
            )
        )

    steps = durable.list_steps(workflow_id, client=client)

    assert [s.output for s in steps] == list(range(1, 1003))


def test_a_workflow_without_steps_or_events(client: durable.Client) -> None:
    workflow_id = start(client, "management.empty")
    assert durable.list_steps(workflow_id, client=client) == []
    assert durable.list_events(workflow_id, client=client) == {}


# --- cancel, resume, fork ------------------------------------------------------------------


def test_cancel_then_resume_then_cancel_again(client: durable.Client) -> None:
    workflow_id = start(client, "management.cancel")

    cancelled = durable.cancel_workflow(workflow_id)
    assert cancelled.status is durable.WorkflowStatus.CANCELLED
    assert durable.get_workflow(workflow_id).status is durable.WorkflowStatus.CANCELLED

    resumed = durable.resume_workflow(workflow_id)
    assert resumed.status is durable.WorkflowStatus.ENQUEUED
    assert resumed.updated_at >= cancelled.updated_at

    # An ENQUEUED workflow can be cancelled too; resuming one already queued changes nothing.
    assert durable.resume_workflow(workflow_id).status is durable.WorkflowStatus.ENQUEUED
    assert durable.cancel_workflow(workflow_id).status is durable.WorkflowStatus.CANCELLED


def test_a_finished_workflow_is_not_cancelled_and_cannot_be_resumed() -> None:
    workflow_id = run_greet()

    assert durable.cancel_workflow(workflow_id).status is durable.WorkflowStatus.SUCCESS
    with pytest.raises(durable.CoordinatorError) as caught:
        durable.resume_workflow(workflow_id)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "fork it" in str(caught.value)


def test_fork_keeps_the_steps_before_the_start_step() -> None:
    source = run_greet("cy")
    new_workflow_id = new_id("fork")

    handle = durable.fork_workflow(source, 3, new_workflow_id=new_workflow_id)

    assert isinstance(handle, durable.WorkflowHandle)
    assert handle.workflow_id == new_workflow_id
    info = durable.get_workflow(new_workflow_id)
    assert info.status is durable.WorkflowStatus.ENQUEUED
    assert (info.name, info.input) == ("management.greet", {"args": ["cy"], "kwargs": {}})
    assert info.forked_from == source
    assert [(s.step_id, s.name) for s in durable.list_steps(new_workflow_id)] == [
        (1, "stage"),
        (2, "shout"),
    ]
    assert durable.list_events(new_workflow_id) == {"stage": "greeting"}

    # Forking again under the same new ID returns the first fork; without one, a new ID.
    assert durable.fork_workflow(source, 1, new_workflow_id=new_workflow_id).workflow_id == (
        new_workflow_id
    )
    other = durable.fork_workflow(source, 1).workflow_id
    assert str(uuid.UUID(other)) == other
    assert durable.list_steps(other) == []


# --- list_workflows ------------------------------------------------------------------------


def test_list_workflows_filters_and_pages_transparently(coordinator: Coordinator) -> None:
    counting = CountingClient(coordinator.address)
    try:
        name = f"management.list.{uuid.uuid4().hex}"
        ids = [start(counting, name, n) for n in range(5)]  # oldest first
        for workflow_id in ids[:2]:
            counting.finish_workflow(
                pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload("done"))
            )
        durable.cancel_workflow(ids[2], client=counting)

        listed = list(durable.list_workflows(name=name, page_size=2, client=counting))
        assert [info.workflow_id for info in listed] == ids[::-1]  # newest first
        assert counting.pages == 3  # 2 + 2 + 1
        assert [info.input for info in listed] == [{"value": n} for n in reversed(range(5))]

        def ids_of(**filters: Any) -> list[str]:
            found = durable.list_workflows(name=name, client=counting, **filters)
            return [info.workflow_id for info in found]

        success = durable.WorkflowStatus.SUCCESS
        assert ids_of(status=success) == [ids[1], ids[0]]
        assert ids_of(status=[durable.WorkflowStatus.CANCELLED, "pending"]) == ids[:1:-1]
        assert ids_of(status="CANCELLED") == [ids[2]]
        assert ids_of(status=[]) == ids[::-1]

        middle = listed[2].created_at  # ids[2]
        assert ids_of(created_after=middle) == ids[:1:-1]
        assert ids_of(created_before=middle) == [ids[1], ids[0]]
        naive_local = middle.astimezone().replace(tzinfo=None)
        assert ids_of(created_after=naive_local) == ids[:1:-1]
        assert ids_of(created_after=datetime.now(timezone.utc) + timedelta(hours=1)) == []

        assert list(durable.list_workflows(name=f"{name}.nothing", client=counting)) == []
    finally:
        counting.close()


def test_list_workflows_checks_its_arguments_at_once() -> None:
    with pytest.raises(ValueError, match="unknown workflow status 'RUNNING'"):
        durable.list_workflows(status="RUNNING")
    with pytest.raises(ValueError, match="page_size"):
        durable.list_workflows(page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        durable.list_workflows(page_size=1001)


def test_list_workflows_includes_workflows_run_by_the_sdk() -> None:
    workflow_id = run_greet()
    found = durable.list_workflows(
        name="management.greet", status=durable.WorkflowStatus.SUCCESS, page_size=1000
    )
    assert workflow_id in {info.workflow_id for info in found}


# --- unknown workflows ---------------------------------------------------------------------


def test_every_function_raises_not_found_for_an_unknown_workflow() -> None:
    missing = new_id("missing")
    calls: list[Callable[[], object]] = [
        lambda: durable.get_workflow(missing),
        lambda: durable.list_steps(missing),
        lambda: durable.list_events(missing),
        lambda: durable.cancel_workflow(missing),
        lambda: durable.resume_workflow(missing),
        lambda: durable.fork_workflow(missing, 1),
    ]
    for call in calls:
        with pytest.raises(durable.WorkflowNotFoundError, match="does not exist"):
            call()
