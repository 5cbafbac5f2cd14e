"""Retention over real gRPC and Postgres: the policy (SetRetention, GetRetention, the
configured default, the minimum), the clean-up loop (deletes expired finished workflows with
all their rows, never an unfinished one, never one not yet expired; two coordinators share
the work without deleting a row twice), and DeleteWorkflow (children, unfinished, missing).

Workflows are expired without waiting by moving their `updated_at` back in SQL (the loop
compares it with the database clock), so the tests use a policy of an hour and wait for
nothing but the loop's next pass (every 0.2 s here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    create_database,
    drop_database,
    duration,
    error_info,
    eventually,
    finish,
    free_port,
    new_id,
    payload,
    running_coordinator,
    scrape_metrics,
    set_event,
    start_pending,
)

HOUR = 3600
FAST = ("--retention-interval", "0.2", "--retention-batch-size", "7")


@pytest.fixture(scope="module")
def fast(database_url: str) -> Iterator[Coordinator]:
    """A coordinator whose clean-up loop runs every 0.2 s, 7 workflows per batch."""
    port = free_port()
    with running_coordinator(database_url, *FAST, "--metrics-listen", f"127.0.0.1:{port}") as c:
        c.metrics = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def ops(fast: Coordinator) -> opb_grpc.OperationsServiceStub:
    return opb_grpc.OperationsServiceStub(fast.channel)


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def no_policy(database_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM durable.retention_policies")


def set_policy(ops: opb_grpc.OperationsServiceStub, seconds: float) -> opb.RetentionPolicy:
    request = opb.SetRetentionRequest(finished_after=duration(seconds))
    return ops.SetRetention(request, timeout=RPC_TIMEOUT).policy


def get_policy(ops: opb_grpc.OperationsServiceStub) -> opb.RetentionPolicy:
    return ops.GetRetention(opb.GetRetentionRequest(), timeout=RPC_TIMEOUT).policy


def per_workflow_tables(db: psycopg.Connection[Any]) -> dict[str, str]:
    """Every table of the schema naming a workflow, with that column: all of them, also
    tables added by later migrations."""
    found = db.execute(
        """SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'durable' AND column_name IN ('workflow_id', 'destination_id')
              AND table_name IN (SELECT table_name FROM information_schema.tables
                                  WHERE table_schema = 'durable' AND table_type = 'BASE TABLE')"""
    ).fetchall()
    return dict(found)


def row_counts(db: psycopg.Connection[Any], ids: list[str]) -> dict[str, int]:
    counts = {}
    for table, column in per_workflow_tables(db).items():
        sql = f"SELECT count(*) FROM durable.{table} WHERE {column} = ANY(%s)"
        counts[table] = db.execute(sql.encode(), (ids,)).fetchone()[0]  # type: ignore[index]
    return counts


def backdate(db: psycopg.Connection[Any], ids: list[str], seconds: float) -> None:
    """Move the workflows' last change `seconds` into the past (expiring them for a policy
    shorter than that) instead of waiting."""
    db.execute(
        "UPDATE durable.workflows SET updated_at = clock_timestamp() - make_interval(secs => %s)"
        " WHERE workflow_id = ANY(%s)",
        (seconds, ids),
    )


def full_workflow(stub: Any, db: psycopg.Connection[Any]) -> str:
    """A finished workflow with a row in every per-workflow table: steps, a failed step
    attempt, an event (and its history), a message to it, and a wait deadline."""
    workflow_id = start_pending(stub)
    stub.RecordStepAttempt(
        pb.RecordStepAttemptRequest(
            workflow_id=workflow_id,
            step_id=1,
            name="flaky",
            attempt=1,
            error=pb.Failure(type="E", message="m", details="d"),
        ),
        timeout=RPC_TIMEOUT,
    )
    stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=1, name="flaky", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    set_event(stub, workflow_id, 2, "progress", 50)
    stub.Send(
        pb.SendRequest(destination_workflow_id=workflow_id, topic="t", message=payload("hi")),
        timeout=RPC_TIMEOUT,
    )
    # A wait that began and never ended (the workflow finished first): written in SQL, as
    # only a Recv parked at the moment of the finish leaves one.
    db.execute(
        "INSERT INTO durable.step_deadlines (workflow_id, namespace, step_id, deadline_at)"
        " VALUES (%s, 'default', 3, now())",
        (workflow_id,),
    )
    finish(stub, workflow_id)
    return workflow_id


# --- the policy ---------------------------------------------------------------------------


def test_policy_is_set_read_and_cleared(ops: opb_grpc.OperationsServiceStub) -> None:
    assert not get_policy(ops).HasField("finished_after")
    policy = set_policy(ops, 30 * 86400)
    assert policy.finished_after.seconds == 30 * 86400 and not policy.from_config
    assert get_policy(ops) == policy
    assert set_policy(ops, 60).finished_after.seconds == 60  # the minimum is allowed
    cleared = ops.SetRetention(opb.SetRetentionRequest(clear=True), timeout=RPC_TIMEOUT)
    assert cleared.policy == opb.RetentionPolicy()
    assert get_policy(ops) == opb.RetentionPolicy()


@pytest.mark.parametrize(
    "request_",
    [
        opb.SetRetentionRequest(finished_after=duration(59.999)),
        opb.SetRetentionRequest(finished_after=duration(0)),
        opb.SetRetentionRequest(finished_after=duration(-HOUR)),
        opb.SetRetentionRequest(finished_after=duration(101 * 365.25 * 86400)),
        opb.SetRetentionRequest(),
        opb.SetRetentionRequest(finished_after=duration(HOUR), clear=True),
    ],
    ids=["under-a-minute", "zero", "negative", "over-100-years", "neither", "both"],
)
def test_bad_policies_are_refused_and_change_nothing(
    ops: opb_grpc.OperationsServiceStub, request_: opb.SetRetentionRequest
) -> None:
    set_policy(ops, HOUR)
    with pytest.raises(grpc.RpcError) as caught:
        ops.SetRetention(request_, timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["field"] == "finished_after"
    assert get_policy(ops).finished_after.seconds == HOUR


def test_configured_default_applies_to_namespaces_without_a_policy(postgres_url: str) -> None:
    url = create_database(postgres_url)
    try:
        with running_coordinator(url, "--retention", "2h", *FAST) as process:
            ops = opb_grpc.OperationsServiceStub(process.channel)
            policy = get_policy(ops)
            assert policy.finished_after.seconds == 2 * HOUR and policy.from_config
            assert set_policy(ops, HOUR) == opb.RetentionPolicy(finished_after=duration(HOUR))
            assert not get_policy(ops).from_config
            cleared = ops.SetRetention(opb.SetRetentionRequest(clear=True), timeout=RPC_TIMEOUT)
            assert cleared.policy.from_config and cleared.policy.finished_after.seconds == 7200

            # The default deletes: 3 h old goes, 1 h old stays.
            stub = process.stub
            old, young = [start_pending(stub) for _ in range(2)]
            finish(stub, old)
            finish(stub, young)
            with psycopg.connect(url, autocommit=True) as db:
                backdate(db, [old], 3 * HOUR)
                backdate(db, [young], HOUR)

                def gone() -> bool:
                    found = db.execute(
                        "SELECT count(*) FROM durable.workflows WHERE workflow_id = %s", (old,)
                    ).fetchone()
                    return found == (0,)

                eventually(gone)
                assert row_counts(db, [young])["workflows"] == 1
            assert "retention: deleted 1 expired workflows" in process.log()
    finally:
        drop_database(postgres_url, url)


@pytest.mark.parametrize("value", ["30s", "59", "soon", "-1h"])
def test_a_bad_configured_retention_stops_the_coordinator_with_a_clear_error(
    value: str,
) -> None:
    from coordinator.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--retention", value])


def test_configured_retention_parses_units() -> None:
    from coordinator.cli import parse_args

    assert parse_args(["--retention", "30d"]).retention_seconds == 30 * 86400
    assert parse_args(["--retention", "90m"]).retention_seconds == 5400
    assert parse_args(["--retention", "3600"]).retention_seconds == 3600
    assert parse_args(["--retention", "off"]).retention_seconds is None
    assert parse_args([]).retention_seconds is None


# --- the clean-up loop --------------------------------------------------------------------


def test_expired_finished_workflows_go_with_all_their_rows(
    fast: Coordinator, ops: opb_grpc.OperationsServiceStub, db: psycopg.Connection[Any]
) -> None:
    stub = fast.stub
    expired = [full_workflow(stub, db) for _ in range(10)]
    young = [full_workflow(stub, db) for _ in range(3)]
    running = [start_pending(stub) for _ in range(2)]
    enqueued = new_id("enqueued")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=enqueued, name="test.flow", queue_name="q"),
        timeout=RPC_TIMEOUT,
    )
    unfinished = [*running, enqueued]
    for workflow_id in unfinished:  # messages to unfinished workflows stay too
        stub.Send(
            pb.SendRequest(destination_workflow_id=workflow_id, message=payload(1)),
            timeout=RPC_TIMEOUT,
        )
    unborn = new_id("unborn")  # a message may wait for a workflow not started yet
    stub.Send(pb.SendRequest(destination_workflow_id=unborn, message=payload(1)))
    before = row_counts(db, expired)
    assert all(before[table] >= 10 for table in before if table != "workflow_changes"), before
    kept_before = row_counts(db, [*young, *unfinished, unborn])

    set_policy(ops, HOUR)
    backdate(db, [*expired, *unfinished], 2 * HOUR)  # unfinished and long untouched: kept
    eventually(lambda: row_counts(db, expired)["workflows"] == 0)
    assert set(row_counts(db, expired).values()) == {0}, row_counts(db, expired)
    assert row_counts(db, [*young, *unfinished, unborn]) == kept_before
    for workflow_id in unfinished:
        reply = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id))
        assert reply.workflow.status in (pb.WORKFLOW_STATUS_PENDING, pb.WORKFLOW_STATUS_ENQUEUED)


def test_two_coordinators_delete_every_expired_workflow_exactly_once(
    database_url: str,
    fast: Coordinator,
    ops: opb_grpc.OperationsServiceStub,
    db: psycopg.Connection[Any],
) -> None:
    port = free_port()
    with running_coordinator(database_url, *FAST, "--metrics-listen", f"127.0.0.1:{port}"):
        addresses = [fast.metrics, f"127.0.0.1:{port}"]  # type: ignore[attr-defined]

        def totals(name: str, **labels: str) -> list[float]:
            want = frozenset(labels.items())
            return [scrape_metrics(address).get((name, want), 0.0) for address in addresses]

        deleted = "durable_retention_deleted_workflows_total"
        rows = "durable_retention_deleted_rows_total"
        before = totals(deleted, by="retention")
        before_rows = {t: sum(totals(rows, table=t)) for t in ("steps", "messages")}
        # 1,000 finished workflows, each with a step and a message, written in SQL (what
        # is measured is the deleting), already an hour and a half old.
        count = 1000
        prefix = new_id("bulk")
        for sql in (
            """INSERT INTO durable.workflows (workflow_id, namespace, name, status, updated_at)
               SELECT %(p)s || i, 'default', 'bulk', 'SUCCESS', now() - interval '90 minutes'
                 FROM generate_series(1, %(n)s) i""",
            """INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                                          output_encoding, output_data)
               SELECT %(p)s || i, 'default', 1, 's', 'STEP', 'json', '1'
                 FROM generate_series(1, %(n)s) i""",
            """INSERT INTO durable.messages (destination_id, namespace, topic, encoding, data)
               SELECT %(p)s || i, 'default', '', 'json', '1' FROM generate_series(1, %(n)s) i""",
        ):
            db.execute(sql.encode(), {"p": prefix, "n": count})
        set_policy(ops, HOUR)

        def left() -> int:
            found = db.execute(
                "SELECT count(*) FROM durable.workflows WHERE workflow_id LIKE %s",
                (prefix + "%",),
            ).fetchone()
            return int(found[0])  # type: ignore[index]

        eventually(lambda: left() == 0, timeout=60)
        after = totals(deleted, by="retention")
        each = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(each) == count, each  # none twice, none missed
        for table in ("steps", "messages"):
            assert sum(totals(rows, table=table)) - before_rows[table] == count, table
        assert sum(totals("durable_retention_batch_duration_seconds_count")) > 0


# --- DeleteWorkflow -----------------------------------------------------------------------


def delete(ops: opb_grpc.OperationsServiceStub, workflow_id: str, children: bool = False) -> int:
    request = opb.DeleteWorkflowRequest(workflow_id=workflow_id, include_children=children)
    return ops.DeleteWorkflow(request, timeout=RPC_TIMEOUT).deleted


def start_child(stub: Any, parent: str, step_id: int) -> str:
    child = new_id("child")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=child,
            name="test.child",
            input=payload({"args": [], "kwargs": {}}),
            parent=pb.StepRef(workflow_id=parent, step_id=step_id),
        ),
        timeout=RPC_TIMEOUT,
    )
    return child


def test_delete_workflow_deletes_a_finished_one_and_is_idempotent(
    fast: Coordinator, ops: opb_grpc.OperationsServiceStub, db: psycopg.Connection[Any]
) -> None:
    workflow_id = full_workflow(fast.stub, db)
    assert delete(ops, workflow_id) == 1
    assert set(row_counts(db, [workflow_id]).values()) == {0}
    assert delete(ops, workflow_id) == 0
    assert delete(ops, new_id("never")) == 0
    with pytest.raises(grpc.RpcError) as caught:
        fast.stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_delete_workflow_refuses_an_unfinished_one(
    fast: Coordinator, ops: opb_grpc.OperationsServiceStub, db: psycopg.Connection[Any]
) -> None:
    workflow_id = start_pending(fast.stub)
    with pytest.raises(grpc.RpcError) as caught:
        delete(ops, workflow_id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert info.reason == "WORKFLOW_NOT_FINISHED"
    assert info.metadata["workflow_id"] == workflow_id
    assert info.metadata["status"] == "PENDING"
    assert row_counts(db, [workflow_id])["workflows"] == 1


def test_delete_workflow_with_children(
    fast: Coordinator, ops: opb_grpc.OperationsServiceStub, db: psycopg.Connection[Any]
) -> None:
    stub = fast.stub
    parent = start_pending(stub)
    child = start_child(stub, parent, 1)
    grandchild = start_child(stub, child, 1)
    family = [parent, child, grandchild]

    # A running grandchild: FAILED_PRECONDITION naming it, nothing deleted.
    finish(stub, child)
    finish(stub, parent)
    with pytest.raises(grpc.RpcError) as caught:
        delete(ops, parent, children=True)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).metadata["workflow_id"] == grandchild
    assert row_counts(db, family)["workflows"] == 3

    finish(stub, grandchild)
    assert delete(ops, parent, children=True) == 3
    assert set(row_counts(db, family).values()) == {0}


def test_deleting_a_parent_alone_leaves_its_children_with_a_dangling_parent_id(
    fast: Coordinator, ops: opb_grpc.OperationsServiceStub
) -> None:
    stub = fast.stub
    parent = start_pending(stub)
    child = start_child(stub, parent, 1)
    finish(stub, child)
    finish(stub, parent)
    assert delete(ops, parent) == 1
    reply = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=child), timeout=RPC_TIMEOUT)
    assert reply.workflow.parent_workflow_id == parent
    listed = stub.ListWorkflows(pb.ListWorkflowsRequest(parent_workflow_id=parent))
    assert [w.workflow_id for w in listed.workflows] == [child]
    assert delete(ops, child) == 1


# --- the SDK, both faces ------------------------------------------------------------------


def test_sdk_sync_face(fast: Coordinator) -> None:
    from datetime import timedelta

    import durable

    client = durable.Client(fast.address)
    try:
        assert durable.get_retention(client=client) == durable.RetentionPolicy(None)
        policy = durable.set_retention(timedelta(days=30), client=client)
        assert policy == durable.RetentionPolicy(timedelta(days=30))
        assert durable.get_retention(client=client) == policy
        with pytest.raises(durable.InvalidRequestError, match="finished_after"):
            durable.set_retention(30, client=client)
        assert durable.set_retention(None, client=client) == durable.RetentionPolicy(None)

        workflow_id = start_pending(fast.stub)
        with pytest.raises(durable.WorkflowNotFinishedError) as caught:
            durable.delete_workflow(workflow_id, client=client)
        assert (caught.value.workflow_id, caught.value.status) == (workflow_id, "PENDING")
        finish(fast.stub, workflow_id)
        assert durable.delete_workflow(workflow_id, include_children=True, client=client) == 1
        assert durable.delete_workflow(workflow_id, client=client) == 0
    finally:
        client.close()


def test_sdk_async_face(fast: Coordinator) -> None:
    import asyncio
    from datetime import timedelta

    import durable
    import durable.aio

    async def main() -> None:
        async with durable.aio.AsyncClient(fast.address) as client:
            policy = await durable.aio.set_retention(3600, client=client)
            assert policy == durable.RetentionPolicy(timedelta(hours=1))
            assert await durable.aio.get_retention(client=client) == policy
            cleared = await durable.aio.set_retention(None, client=client)
            assert cleared == durable.RetentionPolicy(None)
            workflow_id = start_pending(fast.stub)
            finish(fast.stub, workflow_id)
            assert await durable.aio.delete_workflow(workflow_id, client=client) == 1
            assert await durable.aio.delete_workflow(workflow_id, client=client) == 0

    asyncio.run(asyncio.wait_for(main(), timeout=30))
