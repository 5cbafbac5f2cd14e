"""Workflow lifecycle and step records over real gRPC and Postgres: idempotent start, first
writer wins, determinism checks, replay history, finishing, waiting, and paging."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import grpc
import psycopg
import pytest

from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    WORKFLOW_READ_SQL,
    Activity,
    Stub,
    duration,
    error_info,
    eventually,
    finish,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    set_event,
    value_of,
)

T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------


def start(
    stub: Stub, workflow_id: str = "", name: str = "shop.checkout", input: Any = None
) -> pb.StartWorkflowResponse:
    request = pb.StartWorkflowRequest(workflow_id=workflow_id, name=name)
    if input is not None:
        request.input.CopyFrom(payload(input))
    return stub.StartWorkflow(request, timeout=RPC_TIMEOUT)


def started(stub: Stub) -> str:
    """The ID of a new PENDING workflow."""
    reply = start(stub, new_id())
    assert reply.created
    return reply.workflow.workflow_id


def run_step(
    stub: Stub, workflow_id: str, step_id: int, name: str, output: Any
) -> pb.RunStepResponse:
    return stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id, step_id=step_id, name=name, output=payload(output)
        ),
        timeout=RPC_TIMEOUT,
    )


def fail_step(
    stub: Stub, workflow_id: str, step_id: int, name: str, failure: pb.Failure
) -> pb.RunStepResponse:
    return stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=step_id, name=name, error=failure),
        timeout=RPC_TIMEOUT,
    )


def finish_with_error(
    stub: Stub, workflow_id: str, failure: pb.Failure
) -> pb.FinishWorkflowResponse:
    return stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, error=failure), timeout=RPC_TIMEOUT
    )


def get(stub: Stub, workflow_id: str) -> pb.Workflow:
    reply = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    return reply.workflow


def await_workflow(stub: Stub, workflow_id: str, timeout: float) -> pb.AwaitWorkflowResponse:
    return stub.AwaitWorkflow(
        pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(timeout)),
        timeout=timeout + RPC_TIMEOUT,
    )


def list_steps(
    stub: Stub, workflow_id: str, after_step_id: int = 0, page_size: int = 0
) -> pb.ListStepsResponse:
    return stub.ListSteps(
        pb.ListStepsRequest(
            workflow_id=workflow_id, after_step_id=after_step_id, page_size=page_size
        ),
        timeout=RPC_TIMEOUT,
    )


def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def race(pool: ThreadPoolExecutor, calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls at once (released together by a barrier); their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(timeout=RPC_TIMEOUT)
        return call()

    futures = [pool.submit(run, call) for call in calls]
    return [f.result(timeout=RPC_TIMEOUT * 2) for f in futures]


# --- StartWorkflow -------------------------------------------------------------------------


def test_start_workflow_creates_a_pending_workflow_with_its_input(stub: Stub) -> None:
    workflow_id = new_id()
    reply = start(stub, workflow_id, input={"order": 7})
    assert reply.created
    assert not reply.history
    assert not reply.history_truncated
    workflow = reply.workflow
    assert workflow.workflow_id == workflow_id
    assert workflow.name == "shop.checkout"
    assert workflow.status == pb.WORKFLOW_STATUS_PENDING
    assert workflow.input.encoding == "json"
    assert value_of(workflow.input) == {"order": 7}
    assert not workflow.HasField("output")
    assert not workflow.HasField("error")
    assert workflow.create_time.ToDatetime() > datetime(2000, 1, 1)


def test_start_workflow_twice_returns_the_same_workflow_and_keeps_the_first_input(
    stub: Stub,
) -> None:
    workflow_id = new_id()
    first = start(stub, workflow_id, input={"n": 1})
    again = start(stub, workflow_id, input={"n": 2})
    assert first.created
    assert not again.created
    assert again.workflow.workflow_id == workflow_id
    assert value_of(again.workflow.input) == {"n": 1}
    assert again.workflow.create_time == first.workflow.create_time
    assert again.workflow.status == pb.WORKFLOW_STATUS_PENDING

    without_input = start(stub, workflow_id)
    assert not without_input.created
    assert value_of(without_input.workflow.input) == {"n": 1}
    assert value_of(get(stub, workflow_id).input) == {"n": 1}


def test_start_workflow_without_input_records_none(stub: Stub) -> None:
    workflow_id = new_id()
    start(stub, workflow_id)
    assert not get(stub, workflow_id).HasField("input")
    # A later start with an input does not add one.
    assert not start(stub, workflow_id, input=1).workflow.HasField("input")


def test_start_workflow_without_an_id_generates_a_uuid(stub: Stub) -> None:
    first = start(stub)
    second = start(stub)
    assert first.created
    assert second.created
    ids = {first.workflow.workflow_id, second.workflow.workflow_id}
    assert len(ids) == 2
    for workflow_id in ids:
        assert str(uuid.UUID(workflow_id)) == workflow_id
        assert get(stub, workflow_id).status == pb.WORKFLOW_STATUS_PENDING


def test_start_workflow_with_another_name_fails_with_workflow_name_mismatch(stub: Stub) -> None:
    workflow_id = new_id()
    start(stub, workflow_id, name="shop.checkout")
    err = rpc_error(lambda: start(stub, workflow_id, name="shop.refund"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "WORKFLOW_NAME_MISMATCH"
    assert info.domain == "durable.v1"
    assert info.metadata["workflow_id"] == workflow_id
    assert info.metadata["recorded_name"] == "shop.checkout"
    assert info.metadata["requested_name"] == "shop.refund"
    assert get(stub, workflow_id).name == "shop.checkout"


def test_racing_starts_of_one_id_create_exactly_one_workflow(
    stub: Stub, database_url: str, pool: ThreadPoolExecutor
) -> None:
    workflow_id = new_id()
    replies = race(pool, [partial(start, stub, workflow_id, input=n) for n in range(16)])
    creators = [r for r in replies if r.created]
    assert len(creators) == 1
    recorded_input = value_of(creators[0].workflow.input)
    assert all(value_of(r.workflow.input) == recorded_input for r in replies)
    rows = query(
        database_url, "SELECT count(*) FROM durable.workflows WHERE workflow_id = %s", workflow_id
    )
    assert rows == [(1,)]


def test_start_workflow_on_a_pending_workflow_returns_its_history_in_step_order(
    stub: Stub,
) -> None:
    workflow_id = started(stub)
    failure = pb.Failure(type="builtins.KeyError", message="'sku'", details="Traceback ...")
    run_step(stub, workflow_id, 3, "ship", {"tracking": "T3"})
    run_step(stub, workflow_id, 1, "reserve", True)
    set_event(stub, workflow_id, 2, "paymentURL", "https://pay.example/x")
    fail_step(stub, workflow_id, 4, "notify", failure)

    reply = start(stub, workflow_id)
    assert not reply.created
    assert not reply.history_truncated
    history = reply.history
    assert [s.step_id for s in history] == [1, 2, 3, 4]
    assert [s.name for s in history] == ["reserve", "paymentURL", "ship", "notify"]
    assert [s.kind for s in history] == [
        pb.STEP_KIND_STEP,
        pb.STEP_KIND_SET_EVENT,
        pb.STEP_KIND_STEP,
        pb.STEP_KIND_STEP,
    ]
    assert value_of(history[0].output) is True
    assert value_of(history[2].output) == {"tracking": "T3"}
    assert history[3].WhichOneof("outcome") == "error"
    assert history[3].error == failure
    assert all(s.HasField("record_time") for s in history)
    # The same records ListSteps returns.
    assert list(history) == list(list_steps(stub, workflow_id).steps)


def test_start_workflow_on_a_finished_workflow_returns_no_history(stub: Stub) -> None:
    workflow_id = started(stub)
    run_step(stub, workflow_id, 1, "a", 1)
    finish(stub, workflow_id, {"total": 3})
    reply = start(stub, workflow_id)
    assert not reply.created
    assert reply.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(reply.workflow.output) == {"total": 3}
    assert not reply.history
    assert not reply.history_truncated


# --- RunStep -------------------------------------------------------------------------------


def test_run_step_records_and_returns_the_step(stub: Stub) -> None:
    workflow_id = started(stub)
    reply = run_step(stub, workflow_id, 1, "charge", {"charge_id": "ch_1"})
    assert not reply.already_recorded
    step = reply.step
    assert step.step_id == 1
    assert step.name == "charge"
    assert step.kind == pb.STEP_KIND_STEP
    assert step.WhichOneof("outcome") == "output"
    assert step.output.encoding == "json"
    assert value_of(step.output) == {"charge_id": "ch_1"}
    assert step.record_time.ToDatetime() > datetime(2000, 1, 1)
    assert list(list_steps(stub, workflow_id).steps) == [step]


def test_run_step_records_an_error_outcome(stub: Stub) -> None:
    workflow_id = started(stub)
    failure = pb.Failure(type="builtins.ValueError", message="bad card", details="line 1")
    reply = fail_step(stub, workflow_id, 1, "charge", failure)
    assert not reply.already_recorded
    assert reply.step.WhichOneof("outcome") == "error"
    assert reply.step.error == failure


def test_run_step_keeps_opaque_payloads_byte_for_byte(stub: Stub) -> None:
    workflow_id = started(stub)
    raw = b"\x00\xff\xfe not json"
    reply = stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=1,
            name="blob",
            output=pb.Payload(encoding="application/x-pickle+v5", data=raw),
        ),
        timeout=RPC_TIMEOUT,
    )
    assert reply.step.output == pb.Payload(encoding="application/x-pickle+v5", data=raw)
    # An empty encoding means JSON, and is recorded as such.
    reply = stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id, step_id=2, name="n", output=pb.Payload(data=b"[1, 2]")
        ),
        timeout=RPC_TIMEOUT,
    )
    assert reply.step.output == pb.Payload(encoding="json", data=b"[1, 2]")


def test_run_step_first_writer_wins(stub: Stub) -> None:
    workflow_id = started(stub)
    first = run_step(stub, workflow_id, 1, "charge", "first")
    second = run_step(stub, workflow_id, 1, "charge", "second")
    assert not first.already_recorded
    assert second.already_recorded
    assert value_of(second.step.output) == "first"
    assert second.step.record_time == first.step.record_time

    # An error outcome does not replace a recorded output either.
    third = fail_step(stub, workflow_id, 1, "charge", pb.Failure(type="builtins.RuntimeError"))
    assert third.already_recorded
    assert third.step.WhichOneof("outcome") == "output"
    assert value_of(third.step.output) == "first"


def test_racing_run_steps_record_exactly_one_outcome(
    stub: Stub, database_url: str, pool: ThreadPoolExecutor
) -> None:
    workflow_id = started(stub)
    replies = race(pool, [partial(run_step, stub, workflow_id, 1, "charge", n) for n in range(16)])
    winners = [r for r in replies if not r.already_recorded]
    assert len(winners) == 1
    recorded = value_of(winners[0].step.output)
    assert all(value_of(r.step.output) == recorded for r in replies)

    rows = query(
        database_url,
        "SELECT output_data FROM durable.steps WHERE workflow_id = %s AND step_id = 1",
        workflow_id,
    )
    assert len(rows) == 1
    assert json.loads(bytes(rows[0][0])) == recorded


def test_run_step_with_another_name_at_a_recorded_position_fails_with_step_name_mismatch(
    stub: Stub,
) -> None:
    workflow_id = started(stub)
    run_step(stub, workflow_id, 2, "charge_card", "ok")
    err = rpc_error(lambda: run_step(stub, workflow_id, 2, "send_email", "ok"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "STEP_NAME_MISMATCH"
    assert info.metadata["workflow_id"] == workflow_id
    assert info.metadata["step_id"] == "2"
    message = err.details() or ""
    assert "charge_card" in message
    assert "send_email" in message
    assert [s.name for s in list_steps(stub, workflow_id).steps] == ["charge_card"]


def test_run_step_at_a_position_recorded_by_set_event_fails_with_step_name_mismatch(
    stub: Stub,
) -> None:
    workflow_id = started(stub)
    set_event(stub, workflow_id, 1, "status", "x")
    err = rpc_error(lambda: run_step(stub, workflow_id, 1, "status", "x"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "STEP_NAME_MISMATCH"
    assert "set_event" in (err.details() or "")


def test_run_step_on_an_unknown_workflow_fails_with_not_found(stub: Stub) -> None:
    workflow_id = new_id("unknown")
    err = rpc_error(lambda: run_step(stub, workflow_id, 1, "a", 1))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(err)
    assert info.reason == "WORKFLOW_NOT_FOUND"
    assert info.metadata["workflow_id"] == workflow_id


@pytest.mark.parametrize("outcome", ["SUCCESS", "ERROR"])
def test_run_step_on_a_finished_workflow_fails_with_workflow_not_pending(
    stub: Stub, outcome: str
) -> None:
    workflow_id = started(stub)
    run_step(stub, workflow_id, 1, "a", "recorded")
    if outcome == "SUCCESS":
        finish(stub, workflow_id)
    else:
        finish_with_error(stub, workflow_id, pb.Failure(type="builtins.Exception"))

    err = rpc_error(lambda: run_step(stub, workflow_id, 2, "b", "new"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "WORKFLOW_NOT_PENDING"
    assert info.metadata["status"] == outcome
    assert [s.step_id for s in list_steps(stub, workflow_id).steps] == [1]

    # Replaying the step recorded before the finish returns it.
    replay = run_step(stub, workflow_id, 1, "a", "other")
    assert replay.already_recorded
    assert value_of(replay.step.output) == "recorded"


def test_run_step_racing_finish_never_records_a_step_after_the_workflow_finished(
    stub: Stub, database_url: str, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = started(stub)
    with psycopg.connect(database_url) as blocker:
        # An uncommitted row at step 1 makes RunStep's insert wait for this transaction.
        blocker.execute(
            """INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                                          output_encoding, output_data)
               VALUES (%s, 'default', 1, 'a', 'STEP', 'json', '0')""",
            (workflow_id,),
        )
        runner: Future[pb.RunStepResponse] = pool.submit(run_step, stub, workflow_id, 1, "a", 1)
        eventually(lambda: activity.lock_waiters() >= 1, timeout=PROMPT)
        finisher = pool.submit(finish, stub, workflow_id)
        # Either the finish waits for the RunStep in flight, or it completes now.
        eventually(lambda: finisher.done() or activity.lock_waiters() >= 2, timeout=PROMPT)
        finished_first = finisher.done()
        blocker.rollback()

    assert finisher.result(timeout=PROMPT).workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    run_error = runner.exception(timeout=PROMPT)
    if finished_first:
        assert isinstance(run_error, grpc.RpcError), (
            "RunStep recorded a new step after FinishWorkflow had returned"
        )
        assert error_info(run_error).reason == "WORKFLOW_NOT_PENDING"
    else:
        assert run_error is None
        assert not runner.result().already_recorded
    late = query(
        database_url,
        """SELECT s.step_id FROM durable.steps s JOIN durable.workflows w USING (workflow_id)
            WHERE workflow_id = %s AND s.recorded_at > w.updated_at""",
        workflow_id,
    )
    assert late == []


# --- FinishWorkflow and GetWorkflow --------------------------------------------------------


def test_finish_workflow_first_writer_wins(stub: Stub) -> None:
    workflow_id = started(stub)
    first = finish(stub, workflow_id, {"total": 10})
    assert not first.already_finished
    assert first.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(first.workflow.output) == {"total": 10}

    second = finish_with_error(stub, workflow_id, pb.Failure(type="builtins.RuntimeError"))
    assert second.already_finished
    assert second.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(second.workflow.output) == {"total": 10}
    assert not second.workflow.HasField("error")
    assert second.workflow.update_time == first.workflow.update_time

    third = finish(stub, workflow_id, {"total": 99})
    assert third.already_finished
    assert value_of(third.workflow.output) == {"total": 10}


def test_racing_finishes_record_exactly_one_result(stub: Stub, pool: ThreadPoolExecutor) -> None:
    workflow_id = started(stub)
    calls: list[Callable[[], pb.FinishWorkflowResponse]] = [
        partial(finish, stub, workflow_id, n) for n in range(8)
    ]
    calls += [
        partial(finish_with_error, stub, workflow_id, pb.Failure(type=f"E{n}")) for n in range(8)
    ]
    replies = race(pool, calls)
    winners = [r for r in replies if not r.already_finished]
    assert len(winners) == 1
    assert all(r.workflow == winners[0].workflow for r in replies)
    assert get(stub, workflow_id) == winners[0].workflow


def test_get_workflow_reports_status_and_result(stub: Stub) -> None:
    pending_id = started(stub)
    pending = get(stub, pending_id)
    assert pending.status == pb.WORKFLOW_STATUS_PENDING
    assert not pending.HasField("output")
    assert not pending.HasField("error")

    success_id = started(stub)
    finish(stub, success_id, ["a", "b"])
    success = get(stub, success_id)
    assert success.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(success.output) == ["a", "b"]
    assert not success.HasField("error")
    assert success.update_time.ToDatetime() >= success.create_time.ToDatetime()

    error_id = started(stub)
    failure = pb.Failure(type="shop.PaymentDeclined", message="card declined", details="tb")
    finish_with_error(stub, error_id, failure)
    error = get(stub, error_id)
    assert error.status == pb.WORKFLOW_STATUS_ERROR
    assert error.error == failure
    assert not error.HasField("output")


@pytest.mark.parametrize("method", ["GetWorkflow", "FinishWorkflow", "AwaitWorkflow"])
def test_calls_on_an_unknown_workflow_fail_with_not_found(stub: Stub, method: str) -> None:
    workflow_id = new_id("unknown")
    calls: dict[str, Callable[[], object]] = {
        "GetWorkflow": lambda: get(stub, workflow_id),
        "FinishWorkflow": lambda: finish(stub, workflow_id),
        "AwaitWorkflow": lambda: await_workflow(stub, workflow_id, 1.0),
    }
    err = rpc_error(calls[method])
    assert err.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(err)
    assert info.reason == "WORKFLOW_NOT_FOUND"
    assert info.metadata["workflow_id"] == workflow_id


# --- AwaitWorkflow -------------------------------------------------------------------------


def test_await_workflow_returns_once_the_workflow_finishes(
    stub: Stub, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = started(stub)
    since = activity.now()
    waiter = pool.submit(await_workflow, stub, workflow_id, RPC_TIMEOUT)
    activity.wait_parked(since, WORKFLOW_READ_SQL)
    assert not waiter.done()

    finished_at = time.monotonic()
    finisher = pool.submit(finish, stub, workflow_id, "result")
    reply = waiter.result(timeout=PROMPT)
    assert time.monotonic() - finished_at < PROMPT
    assert not reply.timed_out
    assert reply.workflow.status == pb.WORKFLOW_STATUS_SUCCESS
    assert value_of(reply.workflow.output) == "result"
    assert not finisher.result(timeout=PROMPT).already_finished


def test_await_workflow_on_a_finished_workflow_returns_at_once(stub: Stub) -> None:
    workflow_id = started(stub)
    finish_with_error(stub, workflow_id, pb.Failure(type="builtins.Exception", message="x"))
    began = time.monotonic()
    reply = await_workflow(stub, workflow_id, RPC_TIMEOUT)
    assert time.monotonic() - began < PROMPT
    assert not reply.timed_out
    assert reply.workflow.status == pb.WORKFLOW_STATUS_ERROR
    assert reply.workflow.error.message == "x"


def test_await_workflow_times_out_on_a_pending_workflow(stub: Stub) -> None:
    workflow_id = started(stub)
    timeout = 0.5
    began = time.monotonic()
    reply = await_workflow(stub, workflow_id, timeout)
    elapsed = time.monotonic() - began
    assert reply.timed_out
    assert reply.workflow.status == pb.WORKFLOW_STATUS_PENDING
    assert reply.workflow.workflow_id == workflow_id
    assert timeout <= elapsed < timeout + 3.0


def test_await_workflow_with_zero_timeout_looks_once(stub: Stub) -> None:
    workflow_id = started(stub)
    began = time.monotonic()
    assert await_workflow(stub, workflow_id, 0).timed_out
    assert time.monotonic() - began < 2.0
    finish(stub, workflow_id)
    assert not await_workflow(stub, workflow_id, 0).timed_out


# --- ListSteps -----------------------------------------------------------------------------


def test_list_steps_pages_through_steps_in_order(stub: Stub) -> None:
    workflow_id = started(stub)
    for step_id in (5, 1, 7, 2, 3, 6, 4):
        run_step(stub, workflow_id, step_id, f"s{step_id}", step_id)

    pages = []
    after = 0
    while True:
        page = list_steps(stub, workflow_id, after_step_id=after, page_size=3)
        pages.append(([s.step_id for s in page.steps], page.has_more))
        if not page.has_more:
            break
        after = page.steps[-1].step_id
    assert pages == [([1, 2, 3], True), ([4, 5, 6], True), ([7], False)]

    assert [value_of(s.output) for s in list_steps(stub, workflow_id).steps] == list(range(1, 8))
    exact = list_steps(stub, workflow_id, after_step_id=4, page_size=3)
    assert ([s.step_id for s in exact.steps], exact.has_more) == ([5, 6, 7], False)
    past_end = list_steps(stub, workflow_id, after_step_id=7)
    assert (list(past_end.steps), past_end.has_more) == ([], False)


def test_list_steps_skips_gaps_in_step_ids(stub: Stub) -> None:
    workflow_id = started(stub)
    for step_id in (1, 2, 10):
        run_step(stub, workflow_id, step_id, "s", step_id)
    page = list_steps(stub, workflow_id, after_step_id=2, page_size=1)
    assert ([s.step_id for s in page.steps], page.has_more) == ([10], False)
    page = list_steps(stub, workflow_id, after_step_id=1, page_size=1)
    assert ([s.step_id for s in page.steps], page.has_more) == ([2], True)


def test_list_steps_defaults_to_pages_of_100(stub: Stub) -> None:
    workflow_id = started(stub)
    for step_id in range(1, 102):
        run_step(stub, workflow_id, step_id, "s", step_id)
    first = list_steps(stub, workflow_id)
    assert [s.step_id for s in first.steps] == list(range(1, 101))
    assert first.has_more
    rest = list_steps(stub, workflow_id, after_step_id=100)
    assert ([s.step_id for s in rest.steps], rest.has_more) == ([101], False)
    whole = list_steps(stub, workflow_id, page_size=1000)
    assert (len(whole.steps), whole.has_more) == (101, False)


def test_list_steps_of_a_workflow_without_steps_is_empty(stub: Stub) -> None:
    page = list_steps(stub, started(stub))
    assert (list(page.steps), page.has_more) == ([], False)


def test_list_steps_on_an_unknown_workflow_fails_with_not_found(stub: Stub) -> None:
    err = rpc_error(lambda: list_steps(stub, new_id("unknown")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err).reason == "WORKFLOW_NOT_FOUND"


# --- history size bound --------------------------------------------------------------------

BIG_PAYLOAD_LIMIT = 1_100_000
# Four of these already exceed gRPC's default 4 MiB receive limit, so the test client asks
# for more (as the SDK does).
BIG_CLIENT_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@pytest.fixture(scope="module")
def big_stub(database_url: str) -> Iterator[Stub]:
    """A coordinator accepting payloads of about 1 MB, and a client that can receive them."""
    with (
        running_coordinator(database_url, "--max-payload-bytes", str(BIG_PAYLOAD_LIMIT)) as process,
        grpc.insecure_channel(process.address, options=BIG_CLIENT_OPTIONS) as channel,
    ):
        yield Stub(channel)


def test_start_workflow_truncates_a_large_history_and_list_steps_returns_the_rest(
    big_stub: Stub,
) -> None:
    workflow_id = started(big_stub)
    count = 6
    # JSON strings of exactly 1,000,000 bytes, each distinguishable by its first letter.
    blobs = [json.dumps(chr(ord("a") + n) * 999_998) for n in range(count)]
    for step_id, blob in enumerate(blobs, start=1):
        big_stub.RunStep(
            pb.RunStepRequest(
                workflow_id=workflow_id,
                step_id=step_id,
                name="big",
                output=pb.Payload(encoding="json", data=blob.encode()),
            ),
            timeout=RPC_TIMEOUT,
        )

    reply = start(big_stub, workflow_id)
    assert reply.history_truncated
    returned = [s.step_id for s in reply.history]
    # A prefix of the steps, at least the 2 MiB budget's worth, and not all of them.
    assert returned == list(range(1, len(returned) + 1))
    assert 2 <= len(returned) < count
    # Small enough for a client with gRPC's default 4 MiB receive limit.
    assert reply.ByteSize() < 4 * 1024 * 1024

    steps = list(reply.history)
    after = returned[-1]
    while True:
        page = list_steps(big_stub, workflow_id, after_step_id=after, page_size=1000)
        assert page.steps, "ListSteps returned an empty page while has_more was set"
        steps.extend(page.steps)
        if not page.has_more:
            break
        after = page.steps[-1].step_id
    assert [s.step_id for s in steps] == list(range(1, count + 1))
    assert [s.output.data.decode() for s in steps] == blobs

    # ListSteps bounds its pages by the same budget.
    first_page = list_steps(big_stub, workflow_id, page_size=1000)
    assert first_page.has_more
    assert len(first_page.steps) < count


def test_start_workflow_returns_a_small_history_whole(big_stub: Stub) -> None:
    workflow_id = started(big_stub)
    for step_id in range(1, 51):
        run_step(big_stub, workflow_id, step_id, "small", step_id)
    reply = start(big_stub, workflow_id)
    assert not reply.history_truncated
    assert [s.step_id for s in reply.history] == list(range(1, 51))


def test_run_step_waiting_on_a_finish_in_flight_is_refused_once_it_commits(
    stub: Stub, database_url: str, activity: Activity, pool: ThreadPoolExecutor
) -> None:
    workflow_id = started(stub)
    with psycopg.connect(database_url) as finishing:
        # A finish that has updated the row but not committed yet.
        finishing.execute(
            """UPDATE durable.workflows
                  SET status = 'SUCCESS', output_encoding = 'json', output_data = '1'
                WHERE workflow_id = %s""",
            (workflow_id,),
        )
        runner = pool.submit(run_step, stub, workflow_id, 1, "a", 1)
        eventually(lambda: runner.done() or activity.lock_waiters() >= 1, timeout=PROMPT)
        finishing.commit()

    run_error = runner.exception(timeout=PROMPT)
    assert isinstance(run_error, grpc.RpcError), "a step was recorded on a finished workflow"
    assert error_info(run_error).reason == "WORKFLOW_NOT_PENDING"
    assert list(list_steps(stub, workflow_id).steps) == []
