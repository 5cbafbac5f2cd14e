"""Fencing, decided by the coordinator: a write that names an executor which no longer runs
the workflow fails with FAILED_PRECONDITION / NOT_OWNER, also when its step is already
recorded and whatever the workflow's status (taken over, finished by the new owner,
resumed to wait for a worker), unary and over BatchedSession alike. The workflow's own
executor replaying its steps, and a caller that names no executor, still get the recorded
step back.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import NotOwner
from coordinator.store import batched, db
from coordinator.store.records import Payload
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    Stub,
    duration,
    error_info,
    new_id,
    payload,
    rpc_error,
    value_of,
)

FLOW = "fencing.flow"
NS = "default"


def executor() -> str:
    return f"exec-{uuid.uuid4().hex}"


def start(stub: Stub, workflow_id: str, executor_id: str) -> pb.Workflow:
    """Start the workflow under `executor_id`; an unfinished one is taken over by it (what a
    worker does with a workflow it claimed)."""
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id, name=FLOW, input=payload({}), executor_id=executor_id
        ),
        timeout=RPC_TIMEOUT,
    ).workflow


def owned_workflow(stub: Stub, owner: str) -> str:
    workflow_id = new_id("fenced")
    start(stub, workflow_id, owner)
    return workflow_id


def assert_not_owner(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "NOT_OWNER"


def run_step_request(
    workflow_id: str, step_id: int, value: object, executor_id: str
) -> pb.RunStepRequest:
    return pb.RunStepRequest(
        workflow_id=workflow_id,
        step_id=step_id,
        name=f"step{step_id}",
        output=payload(value),
        executor_id=executor_id,
    )


def run_step(
    stub: Stub, workflow_id: str, step_id: int, value: object, executor_id: str
) -> pb.RunStepResponse:
    return stub.RunStep(
        run_step_request(workflow_id, step_id, value, executor_id), timeout=RPC_TIMEOUT
    )


def finish(
    stub: Stub, workflow_id: str, value: object, executor_id: str
) -> pb.FinishWorkflowResponse:
    return stub.FinishWorkflow(
        pb.FinishWorkflowRequest(
            workflow_id=workflow_id, output=payload(value), executor_id=executor_id
        ),
        timeout=RPC_TIMEOUT,
    )


def attempt_request(
    workflow_id: str, step_id: int, attempt: int, executor_id: str
) -> pb.RecordStepAttemptRequest:
    return pb.RecordStepAttemptRequest(
        workflow_id=workflow_id,
        step_id=step_id,
        name=f"step{step_id}",
        attempt=attempt,
        error=pb.Failure(type="builtins.TimeoutError", message=f"try {attempt}"),
        executor_id=executor_id,
    )


# --- every kind of step write, replayed by the executor that lost the workflow -------------

# A write of step `step_id` by `executor_id`; it answers whether the step was recorded
# before (a replay).
Write = Callable[[Stub, str, int, str], bool]


def write_run_step(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    return run_step(stub, workflow_id, step_id, executor_id, executor_id).already_recorded


def write_set_event(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    reply = stub.SetEvent(
        pb.SetEventRequest(
            workflow_id=workflow_id,
            step_id=step_id,
            key="progress",
            value=payload(executor_id),
            executor_id=executor_id,
        ),
        timeout=RPC_TIMEOUT,
    )
    return reply.already_recorded


def write_send(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    reply = stub.Send(
        pb.SendRequest(
            destination_workflow_id=f"{workflow_id}-inbox",
            topic="t",
            message=payload(executor_id),
            caller=pb.StepRef(workflow_id=workflow_id, step_id=step_id, executor_id=executor_id),
        ),
        timeout=RPC_TIMEOUT,
    )
    return reply.already_sent


def write_recv(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    reply = stub.Recv(
        pb.RecvRequest(
            workflow_id=workflow_id,
            step_id=step_id,
            topic="t",
            timeout=duration(0),
            executor_id=executor_id,
        ),
        timeout=RPC_TIMEOUT,
    )
    return reply.already_recorded


def write_sleep(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    reply = stub.Sleep(
        pb.SleepRequest(
            workflow_id=workflow_id,
            step_id=step_id,
            duration=duration(0),
            executor_id=executor_id,
        ),
        timeout=RPC_TIMEOUT,
    )
    return reply.already_recorded


def write_get_event(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    source = f"{workflow_id}-source"
    stub.StartWorkflow(pb.StartWorkflowRequest(workflow_id=source, name=FLOW), timeout=RPC_TIMEOUT)
    stub.SetEvent(  # the first call sets version 1; later ones replay and set nothing
        pb.SetEventRequest(workflow_id=source, step_id=1, key="k", value=payload("v")),
        timeout=RPC_TIMEOUT,
    )
    (reply,) = stub.GetEvent(
        pb.GetEventRequest(
            workflow_id=source,
            key="k",
            timeout=duration(0),
            caller=pb.StepRef(workflow_id=workflow_id, step_id=step_id, executor_id=executor_id),
        ),
        timeout=RPC_TIMEOUT,
    )
    # A replay streams the recorded read with version 0.
    return reply.event.version == 0


def write_start_child(stub: Stub, workflow_id: str, step_id: int, executor_id: str) -> bool:
    reply = stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=f"{workflow_id}-child",
            name="fencing.child",
            parent=pb.StepRef(workflow_id=workflow_id, step_id=step_id, executor_id=executor_id),
        ),
        timeout=RPC_TIMEOUT,
    )
    return not reply.created


WRITES: dict[str, Write] = {
    "RunStep": write_run_step,
    "SetEvent": write_set_event,
    "Send": write_send,
    "Recv": write_recv,
    "Sleep": write_sleep,
    "GetEvent": write_get_event,
    "StartWorkflow": write_start_child,
}


@pytest.fixture(params=list(WRITES), ids=list(WRITES))
def write(request: pytest.FixtureRequest) -> Write:
    return WRITES[request.param]


def test_a_recorded_step_replayed_by_the_executor_that_lost_the_workflow_is_refused(
    stub: Stub, write: Write
) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    assert write(stub, workflow_id, 1, old) is False
    start(stub, workflow_id, new)

    assert_not_owner(rpc_error(lambda: write(stub, workflow_id, 1, old)))
    # The new owner replays what the old one recorded, as recovery does.
    assert write(stub, workflow_id, 1, new) is True


def test_the_owner_replaying_its_own_recorded_step_gets_it_back(stub: Stub, write: Write) -> None:
    owner = executor()
    workflow_id = owned_workflow(stub, owner)
    assert write(stub, workflow_id, 1, owner) is False
    assert write(stub, workflow_id, 1, owner) is True


def test_a_caller_naming_no_executor_is_not_fenced(stub: Stub, write: Write) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    write(stub, workflow_id, 1, old)
    start(stub, workflow_id, new)
    assert write(stub, workflow_id, 1, "") is True


def test_a_recorded_step_keeps_the_outcome_recorded_first(stub: Stub) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    run_step(stub, workflow_id, 1, "old's", old)
    start(stub, workflow_id, new)
    run_step(stub, workflow_id, 2, "new's", new)

    # Replays of the old owner's step and of the new owner's step are refused alike.
    for step_id in (1, 2):
        assert_not_owner(
            rpc_error(functools.partial(run_step, stub, workflow_id, step_id, "x", old))
        )
    replies = [run_step(stub, workflow_id, step_id, "y", new) for step_id in (1, 2)]
    assert [(r.already_recorded, value_of(r.step.output)) for r in replies] == [
        (True, "old's"),
        (True, "new's"),
    ]


# --- a workflow recovered by another worker ---------------------------------------------------


def heartbeat(stub: Stub, executor_id: str, worker_name: str) -> None:
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor_id,
            worker_name=worker_name,
            workflow_names=[FLOW],
            lease=duration(60),
        ),
        timeout=RPC_TIMEOUT,
    )


def test_a_worker_whose_workflow_was_recovered_is_refused_its_recorded_steps(
    stub: Stub,
) -> None:
    before, after, worker_name = executor(), executor(), new_id("worker")
    heartbeat(stub, before, worker_name)
    workflow_id = owned_workflow(stub, before)
    run_step(stub, workflow_id, 1, "first", before)
    # A new session of the same worker name ends the old one's lease at once (a restart
    # while the old process still runs), and claims its workflow.
    heartbeat(stub, after, worker_name)
    claimed = stub.PollWork(
        pb.PollWorkRequest(executor_id=after, max_workflows=1, timeout=duration(5)),
        timeout=RPC_TIMEOUT + 5,
    ).workflows
    assert [(w.workflow_id, w.executor_id) for w in claimed] == [(workflow_id, after)]

    assert_not_owner(rpc_error(lambda: run_step(stub, workflow_id, 1, "again", before)))
    assert run_step(stub, workflow_id, 1, "replayed", after).already_recorded


# --- whatever the workflow's status -----------------------------------------------------------


def test_once_the_new_owner_finished_the_old_one_is_refused_every_write(stub: Stub) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    run_step(stub, workflow_id, 1, "first", old)
    start(stub, workflow_id, new)
    assert not finish(stub, workflow_id, "new's result", new).already_finished

    for write in (
        lambda: run_step(stub, workflow_id, 1, "again", old),  # recorded
        lambda: run_step(stub, workflow_id, 2, "more", old),  # new
        lambda: stub.RecordStepAttempt(
            attempt_request(workflow_id, 2, 1, old), timeout=RPC_TIMEOUT
        ),
        lambda: finish(stub, workflow_id, "old's result", old),
    ):
        assert_not_owner(rpc_error(write))
    # The new owner finishing again, and a caller naming no executor, learn it is finished.
    assert finish(stub, workflow_id, "again", new).already_finished
    reply = finish(stub, workflow_id, "anyone's", "")
    assert reply.already_finished and value_of(reply.workflow.output) == "new's result"


def test_a_resumed_workflow_refuses_its_previous_executor(stub: Stub) -> None:
    old = executor()
    workflow_id = owned_workflow(stub, old)
    run_step(stub, workflow_id, 1, "first", old)
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    resumed = stub.ResumeWorkflow(
        pb.ResumeWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).workflow
    # Waiting for a worker to claim it, run by nobody.
    assert (resumed.status, resumed.executor_id) == (pb.WORKFLOW_STATUS_ENQUEUED, "")

    for write in (
        lambda: run_step(stub, workflow_id, 1, "again", old),
        lambda: run_step(stub, workflow_id, 2, "more", old),
        lambda: finish(stub, workflow_id, "old's result", old),
    ):
        assert_not_owner(rpc_error(write))


def test_a_cancelled_workflows_own_executor_is_told_it_is_not_pending(stub: Stub) -> None:
    owner = executor()
    workflow_id = owned_workflow(stub, owner)
    run_step(stub, workflow_id, 1, "first", owner)
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)

    error = rpc_error(lambda: run_step(stub, workflow_id, 2, "more", owner))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (error_info(error).reason, error_info(error).metadata["status"]) == (
        "WORKFLOW_NOT_PENDING",
        "CANCELLED",
    )
    assert run_step(stub, workflow_id, 1, "again", owner).already_recorded
    reply = finish(stub, workflow_id, "late", owner)
    assert reply.already_finished and reply.workflow.status == pb.WORKFLOW_STATUS_CANCELLED


# --- RecordStepAttempt and FinishWorkflow -----------------------------------------------------


def test_a_step_attempt_of_the_executor_that_lost_the_workflow_is_refused(stub: Stub) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    stub.RecordStepAttempt(attempt_request(workflow_id, 1, 1, old), timeout=RPC_TIMEOUT)
    start(stub, workflow_id, new)

    for attempt in (1, 2):  # recorded already, and new
        request = attempt_request(workflow_id, 1, attempt, old)
        assert_not_owner(
            rpc_error(functools.partial(stub.RecordStepAttempt, request, timeout=RPC_TIMEOUT))
        )
    stub.RecordStepAttempt(attempt_request(workflow_id, 1, 2, new), timeout=RPC_TIMEOUT)


def test_the_owner_repeating_a_recorded_step_attempt_changes_nothing(stub: Stub) -> None:
    owner = executor()
    workflow_id = owned_workflow(stub, owner)
    for _ in range(2):  # e.g. a retry after the first call's reply was lost
        stub.RecordStepAttempt(attempt_request(workflow_id, 1, 1, owner), timeout=RPC_TIMEOUT)
    final = run_step_request(workflow_id, 1, "ok", owner)
    final.attempts = 2
    stub.RunStep(final, timeout=RPC_TIMEOUT)
    (step,) = stub.ListSteps(
        pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).steps
    assert [a.attempt for a in step.failed_attempts] == [1]


def test_a_finish_of_the_executor_that_lost_the_workflow_is_refused(stub: Stub) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    start(stub, workflow_id, new)
    assert_not_owner(rpc_error(lambda: finish(stub, workflow_id, "old's", old)))
    reply = finish(stub, workflow_id, "new's", new)
    assert not reply.already_finished and value_of(reply.workflow.output) == "new's"


# --- over the BatchedSession stream -----------------------------------------------------------


def batched_session(stub: Stub, *calls: pb.SessionRequest) -> dict[int, pb.SessionResponse]:
    """Send `calls` in one BatchedSession message and half-close: every answer, by
    request_id (the stream ends once all are answered)."""
    replies = stub.BatchedSession(
        iter([pb.BatchedSessionRequest(calls=calls)]), timeout=RPC_TIMEOUT
    )
    return {result.request_id: result for message in replies for result in message.results}


def test_over_the_batched_session_a_stale_executor_is_refused_its_recorded_steps(
    stub: Stub,
) -> None:
    old, new = executor(), executor()
    ids = [owned_workflow(stub, old) for _ in range(8)]
    for workflow_id in ids:
        run_step(stub, workflow_id, 1, "old's", old)
        stub.SetEvent(
            pb.SetEventRequest(
                workflow_id=workflow_id, step_id=2, key="k", value=payload(1), executor_id=old
            ),
            timeout=RPC_TIMEOUT,
        )
        stub.RecordStepAttempt(attempt_request(workflow_id, 3, 1, old), timeout=RPC_TIMEOUT)
        start(stub, workflow_id, new)
    # Many calls in one message, so the step and event writers commit some together.
    stale = [
        call
        for n, workflow_id in enumerate(ids)
        for call in (
            pb.SessionRequest(
                request_id=10 * n + 1, run_step=run_step_request(workflow_id, 1, "x", old)
            ),
            pb.SessionRequest(
                request_id=10 * n + 2,
                set_event=pb.SetEventRequest(
                    workflow_id=workflow_id, step_id=2, key="k", value=payload(2), executor_id=old
                ),
            ),
            pb.SessionRequest(
                request_id=10 * n + 3,
                record_step_attempt=attempt_request(workflow_id, 3, 1, old),
            ),
            pb.SessionRequest(
                request_id=10 * n + 4,
                finish_workflow=pb.FinishWorkflowRequest(
                    workflow_id=workflow_id, output=payload("old's"), executor_id=old
                ),
            ),
        )
    ]
    owners = [
        pb.SessionRequest(request_id=1000 + n, run_step=run_step_request(workflow_id, 1, "y", new))
        for n, workflow_id in enumerate(ids)
    ]
    answers = batched_session(stub, *stale, *owners)

    assert len(answers) == len(stale) + len(owners)
    for call in stale:
        error = answers[call.request_id].error
        assert (error.code, error.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION.value[0],
            "NOT_OWNER",
        ), call
    for call in owners:
        reply = answers[call.request_id].run_step
        assert reply.already_recorded and value_of(reply.step.output) == "old's"


def test_over_the_batched_session_a_stale_parent_is_refused_its_recorded_child_start(
    stub: Stub,
) -> None:
    old, new = executor(), executor()
    parent_id = owned_workflow(stub, old)
    child = pb.StartWorkflowRequest(
        workflow_id=f"{parent_id}-child",
        name="fencing.child",
        parent=pb.StepRef(workflow_id=parent_id, step_id=1, executor_id=old),
    )
    stub.StartWorkflow(child, timeout=RPC_TIMEOUT)
    start(stub, parent_id, new)
    answers = batched_session(stub, pb.SessionRequest(request_id=1, start_workflow=child))
    assert answers[1].error.reason == "NOT_OWNER"


# --- the group-commit batch statements, called directly ---------------------------------------


@asynccontextmanager
async def open_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    await db.migrate(database_url)
    pool = await db.open_pool(database_url, 1, 2)
    try:
        yield pool
    finally:
        await pool.close()


def test_batched_writes_refuse_a_stale_executor_its_recorded_steps(
    stub: Stub, database_url: str
) -> None:
    old, new = executor(), executor()
    workflow_id = owned_workflow(stub, old)
    run_step(stub, workflow_id, 1, "old's", old)
    stub.SetEvent(
        pb.SetEventRequest(
            workflow_id=workflow_id, step_id=2, key="k", value=payload(1), executor_id=old
        ),
        timeout=RPC_TIMEOUT,
    )
    start(stub, workflow_id, new)
    out = Payload("json", json.dumps("x").encode())

    async def scenario() -> None:
        async with open_pool(database_url) as pool:
            steps = await batched.record_many(
                pool,
                [
                    batched.StepWrite(NS, workflow_id, 1, "step1", out, executor_id=old),
                    batched.StepWrite(NS, workflow_id, 1, "step1", out, executor_id=new),
                    batched.StepWrite(NS, workflow_id, 1, "step1", out),
                ],
            )
            assert isinstance(steps[0], NotOwner)
            assert [r[1] for r in steps[1:]] == [True, True]  # type: ignore[index]
            events = await batched.set_many(
                pool,
                [
                    batched.EventWrite(NS, workflow_id, 2, "k", out, executor_id=old),
                    batched.EventWrite(NS, workflow_id, 2, "k", out, executor_id=new),
                ],
            )
            assert isinstance(events[0], NotOwner)
            assert events[1][1] is None  # type: ignore[index]  # a replay: nothing set

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
