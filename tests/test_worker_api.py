"""The Worker and the replay path in this process: sessions attach to the workflows the
process starts, stop() is prompt and hands unfinished work over, workflow timeouts, and the
typed errors of fencing and cancellation."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, eventually, new_id, payload

pytestmark = pytest.mark.usefixtures("sdk")

runs: Counter[str] = Counter()
gates: dict[str, threading.Event] = {}


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


@durable.step
def record_run(key: str) -> str:
    runs[key] += 1
    gate = gates.get(key)
    if gate is not None:
        assert gate.wait(timeout=30)
    return key


@durable.workflow(name="tests.worker_api.echo")
def echo(key: str) -> str:
    return record_run(key)


@durable.workflow(name="tests.worker_api.limited", timeout=3600)
def limited() -> str:
    return "done"


def test_a_worker_validates_its_settings() -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        durable.Worker([echo], lease_seconds=0.5)
    with pytest.raises(ValueError, match="max_concurrent"):
        durable.Worker([echo], max_concurrent=0)
    with pytest.raises(durable.DurableError, match="not a workflow"):
        durable.Worker([len])

    @durable.workflow(name="tests.worker_api.echo")
    def impostor(key: str) -> str:
        return key

    with pytest.raises(ValueError, match="two workflows"):
        durable.Worker([echo, impostor])


def test_workflows_started_while_a_worker_runs_belong_to_its_session(
    client: durable.Client,
) -> None:
    worker = durable.Worker([echo], lease_seconds=5)
    with worker:
        key = new_id("session")
        with durable.set_workflow_id(key):
            assert durable.start_workflow(echo, key).result(timeout=10) == key
        assert client.get_workflow(key).executor_id == worker.executor_id
        with pytest.raises(durable.DurableError, match="starts once"):
            worker.start()
    after = new_id("after")
    with durable.set_workflow_id(after):
        assert echo(after) == after
    assert client.get_workflow(after).executor_id == ""


def test_a_worker_runs_forked_workflows_and_stops_promptly(client: durable.Client) -> None:
    key = new_id("forked")
    with durable.set_workflow_id(key):
        assert echo(key) == key
    with durable.Worker([echo], lease_seconds=5) as worker:
        fork = client.fork_workflow(key, start_step_id=1)
        handle = durable.retrieve_workflow(fork.workflow_id, client=client)
        assert handle.result(timeout=10) == key
        assert client.get_workflow(fork.workflow_id).executor_id == worker.executor_id
        began = time.monotonic()
        assert worker.stop(timeout=10)
        # The idle poll (10 s server-side) was cancelled, not waited out.
        assert time.monotonic() - began < 2
    assert runs[key] == 2


def test_a_worker_stopped_with_work_running_hands_it_to_another_quickly(
    client: durable.Client,
) -> None:
    key = new_id("handover")
    gates[key] = threading.Event()
    first = durable.Worker([echo], lease_seconds=60, client=client)
    first.start()
    with durable.set_workflow_id(key):
        handle = durable.start_workflow(echo, key)  # default client: not first's session
    # Give it to `first`: fork it, so that first claims the fork.
    fork = client.fork_workflow(key, start_step_id=1).workflow_id
    eventually(lambda: runs[key] == 2)
    assert not first.stop(timeout=0.2)
    # first's lease was cut from 60 s to 1 s: a new worker gets the fork within seconds.
    with durable.Worker([echo], lease_seconds=5, client=client) as second:
        eventually(lambda: client.get_workflow(fork).executor_id == second.executor_id, 5)
        gates[key].set()
        assert handle.result(timeout=10) == key
        assert durable.retrieve_workflow(fork, client=client).result(timeout=10) == key
        assert client.get_workflow(fork).executor_id == second.executor_id
    assert runs[key] == 3


def test_a_workflow_claimed_while_its_run_here_is_in_a_step_is_not_run_twice_here(
    client: durable.Client,
) -> None:
    key = new_id("overlap")
    gates[key] = threading.Event()
    with durable.set_workflow_id(key):
        handle = durable.start_workflow(echo, key)
    eventually(lambda: runs[key] == 1)
    client.cancel_workflow(key)
    assert client.resume_workflow(key).status == pb.WORKFLOW_STATUS_ENQUEUED
    with durable.Worker([echo], lease_seconds=5) as worker:
        eventually(lambda: client.get_workflow(key).executor_id == worker.executor_id)
        # The worker's run waits for the one still in its step, then goes on from its records.
        gates[key].set()
        assert handle.result(timeout=10) == key
        assert durable.retrieve_workflow(key, client=client).result(timeout=10) == key
    assert runs[key] == 1


def test_work_claimed_by_a_poll_whose_reply_was_lost_is_still_run(
    coordinator: Coordinator, client: durable.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_id("lost-reply")
    with durable.set_workflow_id(key):
        echo(key)
    own = durable.Client(coordinator.address)
    real_poll = own.poll_work
    lost: list[str] = []

    def poll_losing_a_reply(*args: Any, **kwargs: Any) -> list[pb.Workflow]:
        claimed = real_poll(*args, **kwargs)
        if claimed and not lost:
            lost.extend(w.workflow_id for w in claimed)
            raise durable.CoordinatorUnavailableError("reply lost", grpc.StatusCode.UNAVAILABLE)
        return claimed

    monkeypatch.setattr(own, "poll_work", poll_losing_a_reply)
    try:
        with durable.Worker([echo], lease_seconds=60, client=own) as worker:
            fork = client.fork_workflow(key, start_step_id=1).workflow_id
            assert durable.retrieve_workflow(fork, client=client).result(timeout=10) == key
            assert lost == [fork]
            assert client.get_workflow(fork).executor_id == worker.executor_id
    finally:
        own.close()


def test_timeouts_come_from_the_decorator_or_the_enclosing_block(client: durable.Client) -> None:
    def deadline_after_start(workflow_id: str) -> float | None:
        workflow = client.get_workflow(workflow_id)
        if not workflow.HasField("deadline"):
            return None
        return (workflow.deadline.ToNanoseconds() - workflow.create_time.ToNanoseconds()) / 1e9

    ids = [new_id("timeout") for _ in range(3)]
    with durable.set_workflow_id(ids[0]):
        limited()
    with durable.set_workflow_id(ids[1]), durable.set_workflow_timeout(30):
        limited()
    with durable.set_workflow_id(ids[2]), durable.set_workflow_timeout(None):
        limited()
    assert [deadline_after_start(i) for i in ids] == [
        pytest.approx(3600, abs=0.01),
        pytest.approx(30, abs=0.01),
        None,
    ]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            durable.set_workflow_timeout(bad).__enter__()


def test_an_enqueued_workflow_is_waited_for_until_a_worker_runs_it(
    client: durable.Client,
) -> None:
    key = new_id("enqueued")
    with durable.set_workflow_id(key):
        echo(key)
    fork = client.fork_workflow(key, start_step_id=1).workflow_id
    handle = durable.retrieve_workflow(fork, client=client)
    assert handle.status() is durable.WorkflowStatus.ENQUEUED
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.3)
    # Starting it again without a worker does not run it here: it waits for one.
    with durable.set_workflow_id(fork):
        waiting = durable.start_workflow(echo, key)
    with pytest.raises(TimeoutError):
        waiting.result(timeout=0.3)
    client.cancel_workflow(fork)
    with pytest.raises(durable.WorkflowCancelledError):
        waiting.result(timeout=5)
    assert durable.WorkflowCancelledError.reason == "WORKFLOW_NOT_PENDING"


def test_fencing_and_cancellation_raise_their_own_error_types(client: durable.Client) -> None:
    owner, other = new_id("exec"), new_id("exec")
    for session in (owner, other):
        client.heartbeat(session, "", [], 30)
    workflow_id = new_id("fenced")
    client.start_workflow(workflow_id, "tests.worker_api.raw", payload(None), executor_id=owner)
    client.start_workflow(workflow_id, "tests.worker_api.raw", payload(None), executor_id=other)

    def write(executor_id: str) -> None:
        client.run_step(
            pb.RunStepRequest(
                workflow_id=workflow_id,
                step_id=1,
                name="s",
                output=payload(1),
                executor_id=executor_id,
            )
        )

    with pytest.raises(durable.WorkflowOwnershipLostError) as lost:
        write(owner)
    assert lost.value.metadata["workflow_id"] == workflow_id
    client.cancel_workflow(workflow_id)
    with pytest.raises(durable.WorkflowCancelledError) as cancelled:
        write(other)
    assert isinstance(cancelled.value, durable.WorkflowNotPendingError)
    assert cancelled.value.metadata["status"] == "CANCELLED"
