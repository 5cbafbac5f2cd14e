"""Worker leases, recovery, fencing, timeouts, cancel/resume/fork and inspection, driven
through the proto over real gRPC and Postgres."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    create_database,
    drop_database,
    duration,
    error_info,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    set_event,
    value_of,
)

FLOW = "recovery.flow"


def heartbeat(
    stub: Stub, executor: str, names: list[str], lease: float = 30.0, worker_name: str = ""
) -> pb.HeartbeatResponse:
    return stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor,
            worker_name=worker_name,
            workflow_names=names,
            lease=duration(lease),
        ),
        timeout=RPC_TIMEOUT,
    )


def poll(stub: Stub, executor: str, wait: float, max_workflows: int = 1) -> list[pb.Workflow]:
    reply = stub.PollWork(
        pb.PollWorkRequest(
            executor_id=executor, max_workflows=max_workflows, timeout=duration(wait)
        ),
        timeout=RPC_TIMEOUT + wait,
    )
    return list(reply.workflows)


def start(
    stub: Stub, workflow_id: str, executor: str = "", timeout: float | None = None
) -> pb.StartWorkflowResponse:
    request = pb.StartWorkflowRequest(
        workflow_id=workflow_id, name=FLOW, input=payload({"n": 1}), executor_id=executor
    )
    if timeout is not None:
        request.timeout.CopyFrom(duration(timeout))
    return stub.StartWorkflow(request, timeout=RPC_TIMEOUT)


def run_step(
    stub: Stub, workflow_id: str, step_id: int, value: object, executor: str = ""
) -> pb.RunStepResponse:
    return stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=step_id,
            name=f"step{step_id}",
            output=payload(value),
            executor_id=executor,
        ),
        timeout=RPC_TIMEOUT,
    )


def get(stub: Stub, workflow_id: str) -> pb.Workflow:
    return stub.GetWorkflow(
        pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).workflow


def executor() -> str:
    return f"exec-{uuid.uuid4().hex}"


# --- leases and recovery -------------------------------------------------------------------


def test_heartbeat_grants_a_lease_and_polling_needs_one(stub: Stub) -> None:
    me = executor()
    error = rpc_error(lambda: poll(stub, me, 0))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "LEASE_EXPIRED"

    reply = heartbeat(stub, me, [FLOW], lease=5)
    remaining = reply.lease_expire_time.ToDatetime().timestamp() - time.time()
    assert 3 < remaining <= 6
    assert poll(stub, me, 0) == []


@pytest.mark.parametrize("lease", [0.5, 601.0])
def test_leases_outside_bounds_are_rejected(stub: Stub, lease: float) -> None:
    error = rpc_error(lambda: heartbeat(stub, executor(), [FLOW], lease=lease))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == "lease"


def test_a_dead_workers_workflow_is_claimed_by_a_live_worker_which_replays_it(
    stub: Stub,
) -> None:
    dead, alive, bystander = executor(), executor(), executor()
    heartbeat(stub, dead, [FLOW], lease=1)
    workflow_id = new_id("recover")
    start(stub, workflow_id, executor=dead)
    run_step(stub, workflow_id, 1, "done before the crash", executor=dead)

    heartbeat(stub, bystander, ["another.flow"])
    heartbeat(stub, alive, [FLOW])
    # `dead` never heartbeats again: its lease lapses within a second, then `alive` gets it.
    claimed = poll(stub, alive, wait=10)
    assert [w.workflow_id for w in claimed] == [workflow_id]
    assert claimed[0].status == pb.WORKFLOW_STATUS_PENDING
    assert claimed[0].executor_id == alive
    assert claimed[0].recovery_attempts == 1
    assert poll(stub, bystander, wait=0) == []  # it does not have that workflow's code

    resumed = start(stub, workflow_id, executor=alive)
    assert [value_of(s.output) for s in resumed.history] == ["done before the crash"]


def test_a_zombie_learns_it_lost_the_workflow(stub: Stub) -> None:
    zombie, successor = executor(), executor()
    heartbeat(stub, zombie, [FLOW], lease=1)
    workflow_id = new_id("zombie")
    start(stub, workflow_id, executor=zombie)
    run_step(stub, workflow_id, 1, "first", executor=zombie)
    heartbeat(stub, successor, [FLOW])
    assert [w.workflow_id for w in poll(stub, successor, wait=10)] == [workflow_id]
    run_step(stub, workflow_id, 2, "successor's", executor=successor)

    # Every write is refused, a replay of a recorded step (its own or the successor's) too.
    for write in (
        lambda: run_step(stub, workflow_id, 1, "again", executor=zombie),
        lambda: run_step(stub, workflow_id, 2, "zombie's", executor=zombie),
        lambda: run_step(stub, workflow_id, 3, "zombie's", executor=zombie),
        lambda: stub.SetEvent(
            pb.SetEventRequest(
                workflow_id=workflow_id, step_id=3, key="k", value=payload(1), executor_id=zombie
            ),
            timeout=RPC_TIMEOUT,
        ),
        lambda: stub.FinishWorkflow(
            pb.FinishWorkflowRequest(
                workflow_id=workflow_id, output=payload("zombie"), executor_id=zombie
            ),
            timeout=RPC_TIMEOUT,
        ),
    ):
        error = rpc_error(write)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "NOT_OWNER"
    assert get(stub, workflow_id).status == pb.WORKFLOW_STATUS_PENDING
    assert value_of(run_step(stub, workflow_id, 2, "again", executor=successor).step.output) == (
        "successor's"
    )


def test_a_restarted_worker_gets_its_own_workflows_back_at_once(stub: Stub) -> None:
    before, after = executor(), executor()
    heartbeat(stub, before, [FLOW], lease=600, worker_name="worker-7")
    workflow_id = new_id("own")
    start(stub, workflow_id, executor=before)
    # The new session's heartbeat ends the old one's long lease: no need to wait it out.
    heartbeat(stub, after, [FLOW], worker_name="worker-7")
    started = time.monotonic()
    assert [w.workflow_id for w in poll(stub, after, wait=10)] == [workflow_id]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("round_", range(4))
def test_many_workers_polling_at_once_claim_each_workflow_exactly_once(
    stub: Stub, pool: ThreadPoolExecutor, round_: int
) -> None:
    # A race: each round is another chance for two workers to claim one workflow, which a
    # claim re-checked against a stale joined row once allowed about one run in six.
    name = f"race.flow.{uuid.uuid4().hex}"
    source = new_id("source")
    stub.StartWorkflow(pb.StartWorkflowRequest(workflow_id=source, name=name), timeout=RPC_TIMEOUT)
    forks = [
        stub.ForkWorkflow(
            pb.ForkWorkflowRequest(workflow_id=source, start_step_id=1), timeout=RPC_TIMEOUT
        ).workflow.workflow_id
        for _ in range(24)
    ]
    workers = [executor() for _ in range(8)]
    for worker in workers:
        heartbeat(stub, worker, [name])

    def drain(worker: str) -> list[str]:
        got: list[str] = []
        while batch := poll(stub, worker, wait=0, max_workflows=3):
            got.extend(w.workflow_id for w in batch)
        return got

    claims = Counter(wf for got in pool.map(drain, workers) for wf in got)
    assert sorted(claims) == sorted(forks)
    assert set(claims.values()) == {1}


def test_a_workflow_that_keeps_killing_its_workers_goes_to_dead_letter(database_url: str) -> None:
    with running_coordinator(database_url, "--max-recovery-attempts", "1") as coordinator:
        stub = coordinator.stub
        first, second, third = executor(), executor(), executor()
        heartbeat(stub, first, [FLOW], lease=1)
        workflow_id = new_id("poison")
        start(stub, workflow_id, executor=first)

        heartbeat(stub, second, [FLOW], worker_name="poison-worker")
        assert [w.recovery_attempts for w in poll(stub, second, wait=10)] == [1]
        # `second` dies too: its restart (same worker name) ends its lease at once. The next
        # recovery would exceed the limit, so the workflow goes to dead letter instead.
        heartbeat(stub, third, [FLOW], worker_name="poison-worker")
        assert poll(stub, third, wait=0) == []
        assert get(stub, workflow_id).status == pb.WORKFLOW_STATUS_DEAD_LETTER

        resumed = stub.ResumeWorkflow(
            pb.ResumeWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
        ).workflow
        assert resumed.status == pb.WORKFLOW_STATUS_ENQUEUED
        claimed = poll(stub, third, wait=5)
        assert [(w.workflow_id, w.recovery_attempts) for w in claimed] == [(workflow_id, 0)]


# --- cancel, timeouts, resume, fork ---------------------------------------------------------


def test_cancel_stops_new_steps_and_wakes_waiters(stub: Stub, pool: ThreadPoolExecutor) -> None:
    workflow_id = new_id("cancel")
    start(stub, workflow_id)
    awaiting = pool.submit(
        stub.AwaitWorkflow,
        pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(30)),
        timeout=RPC_TIMEOUT + 30,
    )
    cancelled = stub.CancelWorkflow(
        pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).workflow
    assert cancelled.status == pb.WORKFLOW_STATUS_CANCELLED
    reply = awaiting.result(timeout=10)
    assert not reply.timed_out and reply.workflow.status == pb.WORKFLOW_STATUS_CANCELLED

    error = rpc_error(lambda: run_step(stub, workflow_id, 1, "late"))
    assert error_info(error).reason == "WORKFLOW_NOT_PENDING"
    assert error_info(error).metadata["status"] == "CANCELLED"


def test_cancelling_a_finished_workflow_changes_nothing_and_it_cannot_be_resumed(
    stub: Stub,
) -> None:
    workflow_id = new_id("done")
    start(stub, workflow_id)
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload(1)), timeout=RPC_TIMEOUT
    )
    after = stub.CancelWorkflow(
        pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).workflow
    assert after.status == pb.WORKFLOW_STATUS_SUCCESS
    error = rpc_error(
        lambda: stub.ResumeWorkflow(
            pb.ResumeWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "WORKFLOW_FINISHED"


def test_a_workflow_past_its_timeout_is_cancelled(stub: Stub) -> None:
    workflow_id = new_id("deadline")
    started = start(stub, workflow_id, timeout=0.3)
    assert started.workflow.HasField("deadline")
    reply = stub.AwaitWorkflow(
        pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(10)),
        timeout=RPC_TIMEOUT + 10,
    )
    assert reply.workflow.status == pb.WORKFLOW_STATUS_CANCELLED


def test_a_resumed_cancelled_workflow_is_continued_by_a_worker(stub: Stub) -> None:
    workflow_id = new_id("resume")
    start(stub, workflow_id)
    run_step(stub, workflow_id, 1, "kept")
    stub.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    stub.ResumeWorkflow(pb.ResumeWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)

    worker = executor()
    heartbeat(stub, worker, [FLOW])
    claimed = [w for w in poll(stub, worker, wait=5, max_workflows=100)]
    assert workflow_id in [w.workflow_id for w in claimed]
    history = start(stub, workflow_id, executor=worker).history
    assert [value_of(s.output) for s in history] == ["kept"]


def test_fork_reuses_earlier_steps_and_the_events_they_set(stub: Stub) -> None:
    source = new_id("fork-src")
    start(stub, source)
    run_step(stub, source, 1, "one")
    set_event(stub, source, 2, "progress", 50)
    run_step(stub, source, 3, "three")
    set_event(stub, source, 4, "progress", 100)

    request = pb.ForkWorkflowRequest(workflow_id=source, start_step_id=3, new_workflow_id=new_id())
    fork = stub.ForkWorkflow(request, timeout=RPC_TIMEOUT).workflow
    assert fork.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert fork.forked_from == source and fork.name == FLOW
    assert value_of(fork.input) == {"n": 1}
    steps = stub.ListSteps(
        pb.ListStepsRequest(workflow_id=fork.workflow_id), timeout=RPC_TIMEOUT
    ).steps
    assert [s.step_id for s in steps] == [1, 2]
    events = stub.ListEvents(
        pb.ListEventsRequest(workflow_id=fork.workflow_id), timeout=RPC_TIMEOUT
    ).events
    assert [(e.key, value_of(e.value.value), e.value.version) for e in events] == [
        ("progress", 50, 1)
    ]
    # Forking again under the same new ID returns the first fork.
    again = stub.ForkWorkflow(request, timeout=RPC_TIMEOUT).workflow
    assert again.workflow_id == fork.workflow_id and again.create_time == fork.create_time

    taken = pb.ForkWorkflowRequest(workflow_id=source, start_step_id=1, new_workflow_id=source)
    assert rpc_error(lambda: stub.ForkWorkflow(taken, timeout=RPC_TIMEOUT)).code() == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


# --- inspection ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(postgres_url: str) -> Iterator[Coordinator]:
    """A coordinator on its own database, so listings see only this test's workflows."""
    own = create_database(postgres_url)
    try:
        with running_coordinator(own) as coordinator:
            yield coordinator
    finally:
        drop_database(postgres_url, own)


def test_list_workflows_filters_and_pages_newest_first(listed: Coordinator) -> None:
    stub = listed.stub
    ids = [new_id(f"list-{i:02}") for i in range(25)]
    for workflow_id in ids:
        stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=workflow_id, name="list.a"), timeout=RPC_TIMEOUT
        )
    other = new_id("other")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=other, name="list.b"), timeout=RPC_TIMEOUT
    )
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=other, output=payload(1)), timeout=RPC_TIMEOUT
    )

    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListWorkflows(
            pb.ListWorkflowsRequest(name="list.a", page_size=10, page_token=token),
            timeout=RPC_TIMEOUT,
        )
        assert len(page.workflows) <= 10
        seen.extend(w.workflow_id for w in page.workflows)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))

    finished = stub.ListWorkflows(
        pb.ListWorkflowsRequest(statuses=[pb.WORKFLOW_STATUS_SUCCESS]), timeout=RPC_TIMEOUT
    ).workflows
    assert [w.workflow_id for w in finished] == [other]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListWorkflowsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListWorkflowsRequest(statuses=[pb.WORKFLOW_STATUS_UNSPECIFIED]), "statuses"),
        (pb.ListWorkflowsRequest(page_size=1001), "page_size"),
    ],
)
def test_list_workflows_rejects_bad_requests(
    stub: Stub, request_: pb.ListWorkflowsRequest, field: str
) -> None:
    error = rpc_error(lambda: stub.ListWorkflows(request_, timeout=RPC_TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field


def test_failed_attempts_of_a_retried_step_are_listed(stub: Stub) -> None:
    workflow_id = new_id("retried")
    start(stub, workflow_id)
    for attempt in (1, 2):
        stub.RecordStepAttempt(
            pb.RecordStepAttemptRequest(
                workflow_id=workflow_id,
                step_id=1,
                name="flaky",
                attempt=attempt,
                error=pb.Failure(type="builtins.TimeoutError", message=f"try {attempt}"),
            ),
            timeout=RPC_TIMEOUT,
        )
    stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id, step_id=1, name="flaky", output=payload("ok"), attempts=3
        ),
        timeout=RPC_TIMEOUT,
    )
    (step,) = stub.ListSteps(
        pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    ).steps
    assert step.attempts == 3
    assert [(a.attempt, a.error.message) for a in step.failed_attempts] == [
        (1, "try 1"),
        (2, "try 2"),
    ]
    assert all(a.HasField("end_time") for a in step.failed_attempts)


def test_list_events_of_an_unknown_workflow_is_not_found(stub: Stub) -> None:
    error = rpc_error(
        lambda: stub.ListEvents(pb.ListEventsRequest(workflow_id=new_id()), timeout=RPC_TIMEOUT)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_events_too_large_for_one_reply_are_listed_across_pages(database_url: str) -> None:
    with running_coordinator(database_url, "--max-payload-bytes", "1100000") as coordinator:
        stub = coordinator.stub
        workflow_id = new_id("big-events")
        start(stub, workflow_id)
        blobs = {f"key-{n}": chr(ord("a") + n) * 1_000_000 for n in range(5)}
        for step_id, (key, blob) in enumerate(blobs.items(), start=1):
            set_event(stub, workflow_id, step_id, key, blob)

        listed: dict[str, object] = {}
        token, pages = "", 0
        while True:
            reply = stub.ListEvents(
                pb.ListEventsRequest(workflow_id=workflow_id, page_token=token),
                timeout=RPC_TIMEOUT,
            )
            # Every page fits a client that keeps gRPC's default 4 MiB receive limit.
            assert reply.ByteSize() < 4 * 1024 * 1024
            listed.update((e.key, value_of(e.value.value)) for e in reply.events)
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert listed == blobs
        assert pages > 1
        client = durable.Client(coordinator.address)
        try:
            assert durable.list_events(workflow_id, client=client) == blobs
        finally:
            client.close()
