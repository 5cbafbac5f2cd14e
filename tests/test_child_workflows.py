"""Child workflows: StartWorkflow with `parent` on the wire (one transaction with the
parent's START_WORKFLOW step, replays return the recorded child), the SDK (a workflow
calling or starting another, or enqueuing one), and a real worker killed mid-parent.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.queue_harness import QueueWorkers, queue_workers_for
from tests.support import (
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
)
from tests.test_cli import ok

LEASE = 2.0


def start(stub: Stub, workflow_id: str, name: str = "parent", executor: str = "") -> pb.Workflow:
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, executor_id=executor),
        timeout=RPC_TIMEOUT,
    ).workflow


def start_child(
    stub: Stub,
    parent_id: str,
    step_id: int,
    child_id: str,
    name: str = "child",
    *,
    parent_executor: str = "",
    **fields: Any,
) -> pb.StartWorkflowResponse:
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=child_id,
            name=name,
            input=payload({"args": [1], "kwargs": {}}),
            parent=pb.StepRef(workflow_id=parent_id, step_id=step_id, executor_id=parent_executor),
            **fields,
        ),
        timeout=RPC_TIMEOUT,
    )


def steps_of(stub: Stub, workflow_id: str) -> list[pb.Step]:
    reply = stub.ListSteps(pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    return list(reply.steps)


def children_of(stub: Stub, parent_id: str) -> list[pb.Workflow]:
    reply = stub.ListWorkflows(
        pb.ListWorkflowsRequest(parent_workflow_id=parent_id), timeout=RPC_TIMEOUT
    )
    return list(reply.workflows)


def session(stub: Stub, lease: float = 30.0) -> str:
    executor = new_id("exec")
    stub.Heartbeat(
        pb.HeartbeatRequest(executor_id=executor, workflow_names=["child"], lease=duration(lease)),
        timeout=RPC_TIMEOUT,
    )
    return executor


# --- the wire ------------------------------------------------------------------------------


def test_a_child_start_records_the_parents_step_and_links_the_child(stub: Stub) -> None:
    parent_id, child_id = new_id("parent"), new_id("child")
    start(stub, parent_id)
    reply = start_child(stub, parent_id, 1, child_id)
    assert reply.created
    child = reply.workflow
    assert (child.workflow_id, child.parent_workflow_id) == (child_id, parent_id)
    assert child.status == pb.WORKFLOW_STATUS_PENDING
    (step,) = steps_of(stub, parent_id)
    assert (step.step_id, step.kind, step.name) == (1, pb.STEP_KIND_START_WORKFLOW, "child")
    assert json.loads(step.output.data) == child_id
    got = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=child_id), timeout=RPC_TIMEOUT)
    assert got.workflow.parent_workflow_id == parent_id
    assert [w.workflow_id for w in children_of(stub, parent_id)] == [child_id]


def test_replaying_the_step_returns_the_recorded_child(stub: Stub) -> None:
    parent_id, child_id = new_id("parent"), new_id("child")
    start(stub, parent_id)
    start_child(stub, parent_id, 1, child_id)
    again = start_child(stub, parent_id, 1, child_id)
    assert not again.created and again.workflow.workflow_id == child_id
    # An empty ID means "the recorded child".
    recorded = start_child(stub, parent_id, 1, "")
    assert not recorded.created and recorded.workflow.workflow_id == child_id
    # A replay of a PENDING child brings its history, like any start of an existing one.
    stub.RunStep(
        pb.RunStepRequest(workflow_id=child_id, step_id=1, name="s", output=payload(5)),
        timeout=RPC_TIMEOUT,
    )
    assert [s.name for s in start_child(stub, parent_id, 1, child_id).history] == ["s"]
    assert len(children_of(stub, parent_id)) == 1


def test_an_empty_child_id_is_generated_on_the_first_start(stub: Stub) -> None:
    parent_id = new_id("parent")
    start(stub, parent_id)
    first = start_child(stub, parent_id, 1, "")
    assert first.created and first.workflow.workflow_id
    assert start_child(stub, parent_id, 1, "").workflow.workflow_id == first.workflow.workflow_id


@pytest.mark.parametrize(
    ("child_id", "name"), [("another-child", "child"), ("", "other-name"), ("same", "other-name")]
)
def test_a_replay_asking_for_another_child_is_non_deterministic(
    stub: Stub, child_id: str, name: str
) -> None:
    parent_id = new_id("parent")
    start(stub, parent_id)
    start_child(stub, parent_id, 1, "same")
    err = rpc_error(lambda: start_child(stub, parent_id, 1, child_id, name))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "STEP_NAME_MISMATCH"


def test_a_child_start_where_another_operation_was_recorded_is_non_deterministic(
    stub: Stub,
) -> None:
    parent_id = new_id("parent")
    start(stub, parent_id)
    stub.RunStep(
        pb.RunStepRequest(workflow_id=parent_id, step_id=1, name="child", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    err = rpc_error(lambda: start_child(stub, parent_id, 1, new_id("child")))
    assert error_info(err).reason == "STEP_NAME_MISMATCH"


def test_a_finished_missing_or_lost_parent_starts_no_child(stub: Stub) -> None:
    finished_id = new_id("parent")
    start(stub, finished_id)
    finish(stub, finished_id)
    child_id = new_id("child")
    err = rpc_error(lambda: start_child(stub, finished_id, 1, child_id))
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "WORKFLOW_NOT_PENDING",
    )
    err = rpc_error(lambda: start_child(stub, new_id("missing"), 1, child_id))
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "WORKFLOW_NOT_FOUND",
    )
    owner, intruder = session(stub), session(stub)
    owned_id = new_id("parent")
    start(stub, owned_id, executor=owner)
    err = rpc_error(lambda: start_child(stub, owned_id, 1, child_id, parent_executor=intruder))
    assert error_info(err).reason == "NOT_OWNER"
    # Nothing was half-written: the child does not exist.
    err = rpc_error(
        lambda: stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=child_id), timeout=RPC_TIMEOUT)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_a_replaying_parent_takes_over_its_child_only_from_a_dead_session(stub: Stub) -> None:
    dead, live, replayer = session(stub, lease=1.0), session(stub), session(stub)
    parent_id = new_id("parent")
    start(stub, parent_id, executor=dead)
    child_id = new_id("child")
    child = start_child(
        stub, parent_id, 1, child_id, parent_executor=dead, executor_id=dead
    ).workflow
    assert child.executor_id == dead
    # The replayer recovers the parent once the dead session's lease lapsed.
    time.sleep(1.1)
    assert start(stub, parent_id, executor=replayer).executor_id == replayer
    taken = start_child(
        stub, parent_id, 1, child_id, parent_executor=replayer, executor_id=replayer
    )
    assert taken.workflow.executor_id == replayer

    # A child another live session runs is left to it.
    parent_2, child_2 = new_id("parent"), new_id("child")
    start(stub, parent_2, executor=live)
    start_child(stub, parent_2, 1, child_2, parent_executor=live, executor_id=live)
    stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=child_2, name="child", executor_id=replayer),
        timeout=RPC_TIMEOUT,
    )  # a worker recovered the child itself
    left = start_child(stub, parent_2, 1, child_2, parent_executor=live, executor_id=live)
    assert left.workflow.executor_id == replayer


def test_a_child_can_be_enqueued_and_a_deduplicated_one_records_no_step(stub: Stub) -> None:
    parent_id = new_id("parent")
    start(stub, parent_id)
    queue = new_id("queue")
    child = start_child(
        stub, parent_id, 1, new_id("child"), queue_name=queue, deduplication_id="d"
    ).workflow
    assert child.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert (child.queue_name, child.parent_workflow_id) == (queue, parent_id)
    err = rpc_error(
        lambda: start_child(
            stub, parent_id, 2, new_id("child"), queue_name=queue, deduplication_id="d"
        )
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(err).metadata["existing_workflow_id"] == child.workflow_id
    assert [s.step_id for s in steps_of(stub, parent_id)] == [1]


@pytest.mark.parametrize(
    ("parent", "child_id", "field"),
    [
        (pb.StepRef(workflow_id="", step_id=1), "c", "parent.workflow_id"),
        (pb.StepRef(workflow_id="bad id", step_id=1), "c", "parent.workflow_id"),
        (pb.StepRef(workflow_id="p", step_id=0), "c", "parent.step_id"),
        (pb.StepRef(workflow_id="p", step_id=1, executor_id="bad id"), "c", "parent.executor_id"),
        (pb.StepRef(workflow_id="p", step_id=1), "p", "workflow_id"),
    ],
)
def test_bad_parent_fields_are_invalid_arguments(
    stub: Stub, parent: pb.StepRef, child_id: str, field: str
) -> None:
    request = pb.StartWorkflowRequest(workflow_id=child_id, name="child", parent=parent)
    err = rpc_error(lambda: stub.StartWorkflow(request, timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field


# --- the SDK, in this process --------------------------------------------------------------

child_runs: list[str] = []


@durable.workflow(name="tests.child.double")
def double(n: int) -> int:
    child_runs.append(durable.current_workflow_id() or "")
    if n < 0:
        raise ValueError(f"negative: {n}")
    return 2 * n


@durable.workflow(name="tests.child.calls")
def calls_children(n: int, named_id: str) -> list[Any]:
    first = double(n)  # inline, in this thread
    with durable.set_workflow_id(named_id):
        named = double(n + 1)
    handle = durable.start_workflow(double, n + 2)  # in the background
    try:
        double(-1)
    except ValueError as exc:
        failed = str(exc)
    return [first, named, handle.result(timeout=30), failed, handle.workflow_id]


def test_a_workflow_calls_and_starts_children_and_awaits_them(sdk: None) -> None:
    parent_id = new_id("parent")
    with durable.set_workflow_id(parent_id):
        result = calls_children(5, f"{parent_id}-named")
    assert result[:4] == [10, 12, 14, "negative: -1"]
    assert result[4] == f"{parent_id}-3"
    children = sorted(durable.list_workflows(parent_workflow_id=parent_id), key=lambda w: w.name)
    assert {w.workflow_id for w in children} == {
        f"{parent_id}-1",
        f"{parent_id}-named",
        f"{parent_id}-3",
        f"{parent_id}-4",
    }
    assert all(w.parent_workflow_id == parent_id for w in children)
    steps = durable.list_steps(parent_id)
    assert [(s.kind, s.output) for s in steps] == [
        ("start_workflow", f"{parent_id}-1"),
        ("start_workflow", f"{parent_id}-named"),
        ("start_workflow", f"{parent_id}-3"),
        ("start_workflow", f"{parent_id}-4"),
    ]
    assert durable.get_workflow(f"{parent_id}-4").status is durable.WorkflowStatus.ERROR
    # The parent's set_workflow_id was for the parent alone: the inline child got its own.
    assert durable.get_workflow(parent_id).parent_workflow_id is None


def test_a_replayed_parent_gets_its_recorded_children_back_without_running_them(
    sdk: None,
) -> None:
    parent_id = new_id("parent")
    with durable.set_workflow_id(parent_id):
        first = calls_children(1, new_id("named"))
    runs = len(child_runs)
    # A fork past the last step keeps every child start: a worker replays it.
    forked = durable.fork_workflow(parent_id, 5, new_workflow_id=new_id("fork"))
    with durable.Worker([calls_children, double]):
        assert forked.result(timeout=30) == first
    assert len(child_runs) == runs
    assert list(durable.list_workflows(parent_workflow_id=forked.workflow_id)) == []


@durable.workflow(name="tests.child.grandparent")
def grandparent() -> list[Any]:
    return [calls_children(0, f"{durable.current_workflow_id()}-named")]


def test_children_nest(sdk: None) -> None:
    root = new_id("root")
    with durable.set_workflow_id(root):
        result = grandparent()
    assert result[0][:4] == [0, 2, 4, "negative: -1"]
    (middle,) = durable.list_workflows(parent_workflow_id=root)
    assert middle.workflow_id == f"{root}-1"
    assert len(list(durable.list_workflows(parent_workflow_id=middle.workflow_id))) == 4


@durable.step
def start_inside_a_step() -> None:
    double(1)


@durable.workflow(name="tests.child.bad")
def starts_inside_a_step() -> None:
    start_inside_a_step()


def test_starting_a_workflow_inside_a_step_is_refused(sdk: None) -> None:
    with pytest.raises(durable.DurableError, match="inside a step"):
        starts_inside_a_step()


queue = durable.Queue(f"tests-child-queue-{uuid.uuid4().hex[:8]}", concurrency=1)


@durable.workflow(name="tests.child.enqueues")
def enqueues_children() -> list[Any]:
    handles = [queue.enqueue(double, n) for n in (1, 2)]
    return [h.result(timeout=30) for h in handles] + [h.workflow_id for h in handles]


@pytest.fixture
def queue_worker(coordinator: Coordinator, sdk: None) -> Iterator[durable.Worker]:
    worker = durable.Worker([double], queues=[queue], name=new_id("in-process"))
    with worker:
        yield worker


def test_a_workflow_enqueues_children_for_a_queue_worker(
    sdk: None, queue_worker: durable.Worker
) -> None:
    parent_id = new_id("parent")
    with durable.set_workflow_id(parent_id):
        result = enqueues_children()
    assert result[:2] == [2, 4]
    for child_id in result[2:]:
        info = durable.get_workflow(child_id)
        assert (info.parent_workflow_id, info.queue_name) == (parent_id, queue.name)
        assert info.executor_id == queue_worker.executor_id
    assert [s.kind for s in durable.list_steps(parent_id)] == ["start_workflow"] * 2


# --- a real worker killed mid-parent ------------------------------------------------------


@pytest.fixture
def workers(coordinator: Coordinator, tmp_path: Path) -> Iterator[QueueWorkers]:
    with queue_workers_for(coordinator.address, tmp_path) as pool:
        yield pool


def test_a_parent_recovered_after_a_crash_gets_the_same_child(
    workers: QueueWorkers, coordinator: Coordinator, sdk: None
) -> None:
    client = durable.Client(coordinator.address)
    try:
        first = workers.spawn("first", "--lease", str(LEASE), "--hold-at", "c1")
        first_session = first.wait_ready()
        parent_spec = durable.workflow(name=workers.name_of("parent"))(lambda n: None)
        parent_id = new_id("parent")
        with durable.set_workflow_id(parent_id):
            durable.Queue(workers.queue).enqueue(parent_spec, 7)
        child_id = f"{parent_id}-2"
        effects = workers.effects
        eventually(lambda: effects.counts(child_id)["c1"] == 1, timeout=30)
        before = client.get_workflow(child_id)
        assert (before.parent_workflow_id, before.executor_id) == (parent_id, first_session)
        first.kill()

        second = workers.spawn("second", "--lease", str(LEASE))
        second_session = second.wait_ready()
        result = durable.retrieve_workflow(parent_id, client=client).result(timeout=30)
        assert result == ["parent", "child-7"]
        children = durable.list_workflows(parent_workflow_id=parent_id, client=client)
        assert [c.workflow_id for c in children] == [child_id]
        assert client.get_workflow(child_id).executor_id == second_session
        # The parent's first step is not repeated; the child's interrupted step is, once.
        assert effects.counts(parent_id) == {"p1": 1, "p2": 1}
        assert [(e.label, e.worker) for e in effects.all(child_id)] == [
            ("c1", "first"),
            ("c1", "second"),
        ]
        steps = durable.list_steps(parent_id, client=client)
        assert [(s.kind, s.output) for s in steps][:2] == [
            ("step", "p1:first"),
            ("start_workflow", child_id),
        ]
    finally:
        client.close()


def test_the_cli_lists_children_and_queued_workflows_and_shows_the_links(
    stub: Stub, coordinator: Coordinator
) -> None:
    parent_id, child_id = new_id("parent"), new_id("child")
    start(stub, parent_id)
    queue = new_id("queue")
    start_child(stub, parent_id, 1, child_id, queue_name=queue, priority=2)
    listed = json.loads(ok(coordinator, "workflows", "list", "--parent", parent_id, "--json"))
    assert [w["workflow_id"] for w in listed] == [child_id]
    assert (listed[0]["parent_workflow_id"], listed[0]["queue_name"]) == (parent_id, queue)
    listed = json.loads(ok(coordinator, "workflows", "list", "--queue", queue, "--json"))
    assert [w["workflow_id"] for w in listed] == [child_id]
    shown = ok(coordinator, "workflows", "show", child_id)
    assert re.search(rf"parent\s+{parent_id}", shown)
    assert re.search(rf"queue\s+{queue} \(priority 2\)", shown)
    parent_shown = ok(coordinator, "workflows", "show", parent_id)
    assert "start_workflow" in parent_shown and child_id in parent_shown
