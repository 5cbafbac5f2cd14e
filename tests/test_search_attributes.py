"""Search attributes over a real coordinator and real Postgres: given at start (wire and SDK,
also for children, enqueues and starts by name), set during a run (sync and async faces,
checkpointed: a replay after a crash sets nothing again), shown by GetWorkflow and
ListWorkflows, filtered on (one or several keys, with the other filters) through the GIN
index, limits refused with INVALID_ARGUMENT naming `attributes`, and two coordinators on
one database."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration

import durable
import durable.aio
from coordinator.store import management
from coordinator.store.filters import WorkflowFilter
from coordinator.store.records import Status
from durable._aio.client import default_client as aio_default_client
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc
from tests.support import (
    RPC_TIMEOUT,
    Coordinator,
    Stub,
    error_info,
    new_id,
    payload,
    rpc_error,
    start_pending,
)
from tests.test_cli import fails as cli_fails
from tests.test_cli import ok as cli_ok
from tests.test_cli import run as cli_run

LEASE = 1.0


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    """The SDK's default client (sync face) and the async face's, on the coordinator."""
    client = durable.configure(coordinator.address)
    durable.aio.configure(coordinator.address)
    yield client
    client.close()


def attrs_of(stub: Stub, workflow_id: str) -> dict[str, str]:
    reply = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    return dict(reply.workflow.attributes)


def set_attrs(
    stub: Stub, workflow_id: str, step_id: int, executor_id: str = "", **attributes: str
) -> pb.SetAttributesResponse:
    return stub.SetAttributes(
        pb.SetAttributesRequest(
            workflow_id=workflow_id,
            step_id=step_id,
            attributes=attributes,
            executor_id=executor_id,
        ),
        timeout=RPC_TIMEOUT,
    )


def listed(stub: Stub, **filters: Any) -> set[str]:
    """The IDs ListWorkflows returns for `filters`, every page."""
    request = pb.ListWorkflowsRequest(page_size=100, **filters)
    found: set[str] = set()
    while True:
        reply = stub.ListWorkflows(request, timeout=RPC_TIMEOUT)
        found.update(w.workflow_id for w in reply.workflows)
        if not reply.next_page_token:
            return found
        request.page_token = reply.next_page_token


def refused(call: Any) -> str:
    """The details of a call refused with INVALID_ARGUMENT naming `attributes`."""
    err = rpc_error(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert error_info(err).metadata["field"] == "attributes", err.details()
    return err.details() or ""


# --- given at start ----------------------------------------------------------------------------


def test_a_start_records_attributes_and_a_later_start_keeps_them(stub: Stub) -> None:
    workflow_id = new_id("attrs")
    first = stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name="attrs.wire",
            input=payload({"args": [], "kwargs": {}}),
            attributes={"order": "4711", "tenant": "acme"},
        ),
        timeout=RPC_TIMEOUT,
    )
    assert first.created
    assert dict(first.workflow.attributes) == {"order": "4711", "tenant": "acme"}
    again = stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id, name="attrs.wire", attributes={"order": "other"}
        ),
        timeout=RPC_TIMEOUT,
    )
    assert not again.created
    assert dict(again.workflow.attributes) == {"order": "4711", "tenant": "acme"}
    assert attrs_of(stub, workflow_id) == {"order": "4711", "tenant": "acme"}


@durable.workflow(name="attrs.child")
def child_flow(n: int) -> int:
    return n * 2


@durable.workflow(name="attrs.parent")
def parent_flow(n: int) -> int:
    with durable.set_start_options(attributes={"role": "child", "n": str(n)}):
        return child_flow(n)


@durable.workflow(name="attrs.plain")
def plain_flow() -> str:
    return "ok"


def test_the_sdk_starts_with_attributes_in_a_start_options_block(
    stub: Stub, client: durable.Client
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with durable.set_start_options(attributes={"tenant": tenant, "kind": "parent"}):
        handle = durable.start_workflow(parent_flow, 4)
    assert handle.result(timeout=30) == 8
    info = durable.get_workflow(handle.workflow_id)
    assert info.attributes == {"tenant": tenant, "kind": "parent"}
    # A child gets what its own start gives, not its parent's attributes.
    (child,) = durable.list_workflows(parent_workflow_id=handle.workflow_id)
    assert child.attributes == {"role": "child", "n": "4"}

    # Enqueued, and started by name (both ENQUEUED: no worker here runs them).
    queue = durable.Queue(f"attrs-{uuid.uuid4().hex[:6]}")
    with durable.set_start_options(attributes={"tenant": tenant, "via": "queue"}):
        enqueued = queue.enqueue(plain_flow)
    with durable.set_start_options(attributes={"tenant": tenant, "via": "name"}):
        by_name = durable.start_workflow("attrs.elsewhere")
    assert durable.get_workflow(enqueued.workflow_id).attributes["via"] == "queue"
    assert durable.get_workflow(by_name.workflow_id).attributes["via"] == "name"
    # Nested blocks: a block with only attributes keeps the outer timing, and the
    # outer attributes hold inside a block that gives none.
    with (
        durable.set_start_options(attributes={"tenant": tenant, "via": "nested"}),
        durable.set_start_options(delay=3600),
    ):
        delayed = durable.start_workflow(plain_flow)
    got = durable.get_workflow(delayed.workflow_id)
    assert got.attributes == {"tenant": tenant, "via": "nested"}
    assert got.due_time is not None and got.status is durable.WorkflowStatus.ENQUEUED
    assert {w.workflow_id for w in durable.list_workflows(attributes={"tenant": tenant})} == {
        handle.workflow_id,
        enqueued.workflow_id,
        by_name.workflow_id,
        delayed.workflow_id,
    }
    for workflow_id in (enqueued.workflow_id, by_name.workflow_id, delayed.workflow_id):
        durable.cancel_workflow(workflow_id)


def test_the_sdk_refuses_attributes_that_are_not_strings(client: durable.Client) -> None:
    with (
        pytest.raises(TypeError, match="not a str"),
        durable.set_start_options(attributes={"n": 1}),  # type: ignore[dict-item]
    ):
        pass
    with pytest.raises(TypeError, match="not a str"):
        list(durable.list_workflows(attributes={"n": 1}))  # type: ignore[dict-item]
    with pytest.raises(durable.NotInWorkflowError, match="from a workflow"):
        durable.set_attributes(stage="x")


# --- set during a run --------------------------------------------------------------------------


@durable.workflow(name="attrs.sync_run")
def sync_run(order: str) -> str:
    durable.set_attributes(stage="received", order=order)
    durable.set_attributes({"stage": "paid", "order": None})
    return "done"


@durable.workflow(name="attrs.async_run")
async def async_run(order: str) -> str:
    await durable.aio.set_attributes(stage="received", order=order)
    await asyncio.gather(
        durable.aio.set_attributes(a="1"), durable.aio.set_attributes({"b": "2", "stage": ""})
    )
    return "done"


def test_a_sync_workflow_sets_attributes_as_steps(stub: Stub, client: durable.Client) -> None:
    with durable.set_start_options(attributes={"tenant": "acme", "order": "x"}):
        handle = durable.start_workflow(sync_run, "4711")
    assert handle.result(timeout=30) == "done"
    assert durable.get_workflow(handle.workflow_id).attributes == {
        "tenant": "acme",
        "stage": "paid",
    }
    steps = durable.list_steps(handle.workflow_id)
    assert [(s.step_id, s.kind, s.name, s.output) for s in steps] == [
        (1, "set_attributes", "attributes", None),
        (2, "set_attributes", "attributes", None),
    ]


def test_an_async_workflow_sets_attributes_as_steps(client: durable.Client) -> None:
    async def main() -> tuple[str, str]:
        try:
            handle = await durable.aio.start_workflow(async_run, "42")
            return handle.workflow_id, await handle.result(timeout=30)
        finally:
            await aio_default_client().close()

    workflow_id, result = asyncio.run(main())
    assert result == "done"
    assert durable.get_workflow(workflow_id).attributes == {"order": "42", "a": "1", "b": "2"}
    assert [s.kind for s in durable.list_steps(workflow_id)] == ["set_attributes"] * 3


# --- replay ------------------------------------------------------------------------------------


def test_a_replayed_set_changes_nothing_and_returns_the_current_attributes(stub: Stub) -> None:
    workflow_id = start_pending(stub, name="attrs.replay")
    first = set_attrs(stub, workflow_id, 1, stage="one", tenant="acme")
    assert not first.already_recorded
    assert first.step.kind == pb.STEP_KIND_SET_ATTRIBUTES and first.step.name == "attributes"
    assert dict(first.attributes) == {"stage": "one", "tenant": "acme"}
    assert dict(set_attrs(stub, workflow_id, 2, stage="two").attributes) == {
        "stage": "two",
        "tenant": "acme",
    }
    # Step 1 again (a retried call, or a replay), with other values: nothing is set.
    replay = set_attrs(stub, workflow_id, 1, stage="one", tenant="")
    assert replay.already_recorded
    assert replay.step.step_id == 1 and replay.step.record_time == first.step.record_time
    assert dict(replay.attributes) == {"stage": "two", "tenant": "acme"}
    assert attrs_of(stub, workflow_id) == {"stage": "two", "tenant": "acme"}
    # A step recorded as something else at that position: not deterministic.
    stub.RunStep(
        pb.RunStepRequest(workflow_id=workflow_id, step_id=3, name="s", output=payload(1)),
        timeout=RPC_TIMEOUT,
    )
    err = rpc_error(lambda: set_attrs(stub, workflow_id, 3, stage="three"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Finished: refused, and the attributes stay.
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload("done")),
        timeout=RPC_TIMEOUT,
    )
    err = rpc_error(lambda: set_attrs(stub, workflow_id, 4, stage="late"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert attrs_of(stub, workflow_id) == {"stage": "two", "tenant": "acme"}
    # The step is a write of a running workflow: fenced like RunStep.
    other = start_pending(stub, name="attrs.replay")
    err = rpc_error(lambda: set_attrs(stub, other, 1, executor_id="not-its-executor", a="b"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "NOT_OWNER"
    missing = rpc_error(lambda: set_attrs(stub, new_id("missing"), 1, a="b"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


recovered_steps: list[str] = []


@durable.step(name="attrs.crashy.work")
def crashy_work(label: str) -> str:
    recovered_steps.append(label)
    return label


@durable.workflow(name="attrs.crashy")
def crashy(order: str) -> str:
    durable.set_attributes(stage="one", order=order)
    crashy_work("a")
    durable.set_attributes(stage="two")
    crashy_work("b")
    durable.set_attributes(stage="done")
    return "finished"


def test_a_run_recovered_after_a_crash_sets_nothing_twice(
    stub: Stub, client: durable.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An old run, as a worker that died after step 3 left it: it set stage=one, ran a,
    # set stage=two. Then an operator-visible value changes nothing the replay may undo.
    workflow_id = new_id("attrs-crashy")
    executor = f"old-{uuid.uuid4().hex}"
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor, workflow_names=["attrs.crashy"], lease=Duration(seconds=1)
        ),
        timeout=RPC_TIMEOUT,
    )
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name="attrs.crashy",
            input=payload({"args": ["4711"], "kwargs": {}}),
            executor_id=executor,
            attributes={"tenant": "acme"},
        ),
        timeout=RPC_TIMEOUT,
    )
    set_attrs(stub, workflow_id, 1, executor, stage="one", order="4711")
    stub.RunStep(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=2,
            name="attrs.crashy.work",
            output=payload("a"),
            executor_id=executor,
        ),
        timeout=RPC_TIMEOUT,
    )
    set_attrs(stub, workflow_id, 3, executor, stage="two")
    assert attrs_of(stub, workflow_id) == {"tenant": "acme", "stage": "two", "order": "4711"}

    sent: list[dict[str, str]] = []
    real = durable.Client.set_attributes

    def counting(self: durable.Client, request: pb.SetAttributesRequest) -> Any:
        sent.append(dict(request.attributes))
        return real(self, request)

    monkeypatch.setattr(durable.Client, "set_attributes", counting)
    recovered_steps.clear()
    with durable.Worker([crashy], lease_seconds=LEASE, client=client):
        result = durable.retrieve_workflow(workflow_id).result(timeout=30)
    assert result == "finished"
    # Steps 1-3 were replayed: no SetAttributes sent for them, step a not run again.
    assert sent == [{"stage": "done"}]
    assert recovered_steps == ["b"]
    assert attrs_of(stub, workflow_id) == {"tenant": "acme", "stage": "done", "order": "4711"}
    kinds = [(s.step_id, s.kind) for s in durable.list_steps(workflow_id)]
    assert kinds == [
        (1, "set_attributes"),
        (2, "step"),
        (3, "set_attributes"),
        (4, "step"),
        (5, "set_attributes"),
    ]


# --- listing -----------------------------------------------------------------------------------


def test_list_filters_by_one_or_several_keys_with_the_other_filters(stub: Stub) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"

    def start(name: str, **attributes: str) -> str:
        workflow_id = new_id("attrs-list")
        stub.StartWorkflow(
            pb.StartWorkflowRequest(
                workflow_id=workflow_id,
                name=name,
                input=payload({"args": [], "kwargs": {}}),
                attributes={"tenant": tenant, **attributes},
            ),
            timeout=RPC_TIMEOUT,
        )
        return workflow_id

    a = start("attrs.list.checkout", order="1", region="eu")
    b = start("attrs.list.checkout", order="2", region="eu")
    c = start("attrs.list.refund", order="1", region="us")
    d = start("attrs.list.checkout", order="1", region="us")
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=d, output=payload("ok")), timeout=RPC_TIMEOUT
    )

    assert listed(stub, attributes={"tenant": tenant}) == {a, b, c, d}
    assert listed(stub, attributes={"tenant": tenant, "order": "1"}) == {a, c, d}
    assert listed(stub, attributes={"tenant": tenant, "order": "1", "region": "us"}) == {c, d}
    assert listed(stub, attributes={"tenant": tenant, "order": "3"}) == set()
    assert listed(stub, attributes={"tenant": tenant, "missing": "x"}) == set()
    assert listed(stub, attributes={"tenant": tenant}, name="attrs.list.checkout") == {a, b, d}
    pending = [pb.WORKFLOW_STATUS_PENDING]
    assert listed(stub, attributes={"tenant": tenant, "order": "1"}, statuses=pending) == {a, c}
    assert listed(
        stub,
        attributes={"tenant": tenant, "order": "1"},
        statuses=[pb.WORKFLOW_STATUS_SUCCESS],
        name="attrs.list.checkout",
    ) == {d}
    # Paged: the filter holds across pages.
    pages = pb.ListWorkflowsRequest(page_size=1, attributes={"tenant": tenant, "order": "1"})
    seen: list[str] = []
    while True:
        reply = stub.ListWorkflows(pages, timeout=RPC_TIMEOUT)
        seen.extend(w.workflow_id for w in reply.workflows)
        assert all(w.attributes["order"] == "1" for w in reply.workflows)
        if not reply.next_page_token:
            break
        pages.page_token = reply.next_page_token
    assert sorted(seen) == sorted([a, c, d])

    # A value set during the run is found the same way; a removed key no longer is.
    set_attrs(stub, a, 1, order="", stage="paid")
    assert listed(stub, attributes={"tenant": tenant, "stage": "paid"}) == {a}
    assert listed(stub, attributes={"tenant": tenant, "order": "1"}) == {c, d}


def test_the_sdk_lists_by_attributes_in_both_faces(stub: Stub, client: durable.Client) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with durable.set_start_options(attributes={"tenant": tenant, "order": "9"}):
        handle = durable.start_workflow(plain_flow)
    handle.result(timeout=30)
    sync = list(durable.list_workflows(attributes={"tenant": tenant}, status="SUCCESS"))
    assert [w.workflow_id for w in sync] == [handle.workflow_id]
    assert sync[0].attributes == {"tenant": tenant, "order": "9"}

    async def main() -> list[durable.WorkflowInfo]:
        try:
            return [
                w
                async for w in durable.aio.list_workflows(
                    attributes={"tenant": tenant, "order": "9"}, name="attrs.plain"
                )
            ]
        finally:
            await aio_default_client().close()

    assert [w.workflow_id for w in asyncio.run(main())] == [handle.workflow_id]


def test_a_fork_keeps_the_originals_attributes(stub: Stub) -> None:
    workflow_id = start_pending(stub, name="attrs.fork")
    set_attrs(stub, workflow_id, 1, tenant="acme", stage="one")
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload("ok")),
        timeout=RPC_TIMEOUT,
    )
    fork = stub.ForkWorkflow(
        pb.ForkWorkflowRequest(workflow_id=workflow_id, start_step_id=1), timeout=RPC_TIMEOUT
    )
    assert dict(fork.workflow.attributes) == {"tenant": "acme", "stage": "one"}
    assert fork.workflow.forked_from == workflow_id
    stub.CancelWorkflow(
        pb.CancelWorkflowRequest(workflow_id=fork.workflow.workflow_id), timeout=RPC_TIMEOUT
    )


# --- the CLI ---------------------------------------------------------------------------------


def test_the_cli_lists_by_attributes_and_shows_them(
    coordinator: Coordinator, stub: Stub, client: durable.Client
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    out = cli_ok(
        coordinator,
        "workflows",
        "start",
        "attrs.cli",
        "--attr",
        f"tenant={tenant}",
        "--attr",
        "order=1",
    )
    first = out.split()[0]
    second = start_pending(stub, name="attrs.cli")
    set_attrs(stub, second, 1, tenant=tenant, order="2")

    listed_text = cli_ok(coordinator, "workflows", "list", "--attr", f"tenant={tenant}")
    assert first in listed_text and second in listed_text
    assert "ATTRIBUTES" in listed_text and f"order=1 tenant={tenant}" in listed_text
    both = cli_ok(
        coordinator,
        "workflows",
        "list",
        "--attr",
        f"tenant={tenant}",
        "--attr",
        "order=2",
        "--status",
        "PENDING",
        "--json",
    )
    assert [w["workflow_id"] for w in json.loads(both)] == [second]
    assert json.loads(both)[0]["attributes"] == {"tenant": tenant, "order": "2"}
    assert (
        "no workflows match"
        in cli_run(
            coordinator, "workflows", "list", "--attr", f"tenant={tenant}", "--status", "SUCCESS"
        ).stderr
    )

    shown = cli_ok(coordinator, "workflows", "show", second)
    assert re.search(rf"^attributes +order=2 tenant={tenant}$", shown, re.MULTILINE), shown
    assert "set_attributes" in shown

    assert "not KEY=VALUE" in cli_fails(coordinator, "workflows", "list", "--attr", "tenant")
    assert "attributes" in cli_fails(coordinator, "workflows", "list", "--attr", "bad key=1")
    for workflow_id in (first, second):
        durable.cancel_workflow(workflow_id)


# --- limits ------------------------------------------------------------------------------------


def test_limits_are_refused_naming_the_field(stub: Stub) -> None:
    def start(attributes: dict[str, str]) -> object:
        return stub.StartWorkflow(
            pb.StartWorkflowRequest(
                workflow_id=new_id("attrs-limits"), name="attrs.limits", attributes=attributes
            ),
            timeout=RPC_TIMEOUT,
        )

    too_many = {f"k{i}": "v" for i in range(33)}
    assert "more than 32 keys" in refused(lambda: start(too_many))
    assert "key" in refused(lambda: start({"bad key": "v"}))
    refused(lambda: start({"k" * 65: "v"}))
    refused(lambda: start({"k": "v" * 257}))
    refused(lambda: start({"k": "line\nbreak"}))
    assert "empty" in refused(lambda: start({"k": ""}))
    start({f"k{i}": "v" * 256 for i in range(32)})  # the limits themselves are fine
    refused(lambda: stub.ListWorkflows(pb.ListWorkflowsRequest(attributes={"k": ""})))

    # SetAttributes: the count holds after the merge.
    workflow_id = start_pending(stub, name="attrs.limits")
    full = set_attrs(stub, workflow_id, 1, **{f"k{i}": "v" for i in range(30)})
    assert len(full.attributes) == 30
    err = refused(lambda: set_attrs(stub, workflow_id, 2, a="1", b="2", c="3"))
    assert "more than 32 keys" in err
    assert len(attrs_of(stub, workflow_id)) == 30  # nothing merged, no step recorded
    steps = stub.ListSteps(pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    assert [s.step_id for s in steps.steps] == [1]
    # Replacing and removing keys within the limit is fine, at the same step position.
    ok = set_attrs(stub, workflow_id, 2, k0="", k1="", a="1", b="2", c="3")
    assert len(ok.attributes) == 31 and "k0" not in ok.attributes
    refused(lambda: set_attrs(stub, workflow_id, 3))
    refused(lambda: set_attrs(stub, workflow_id, 3, **{"bad key": "x"}))


def test_the_sdk_reports_a_limit_from_a_workflow(client: durable.Client) -> None:
    @durable.workflow(name="attrs.too_many")
    def too_many() -> None:
        durable.set_attributes({f"k{i}": "v" for i in range(40)})

    with pytest.raises(durable.CoordinatorError, match="attributes"):
        durable.start_workflow(too_many).result(timeout=30)


# --- the index ---------------------------------------------------------------------------------


def explain(conn: psycopg.Connection[Any], where: WorkflowFilter) -> str:
    params = {
        "ns": "default",
        **where.params(),
        "cursor_time": None,
        "cursor_id": "",
        "limit": 101,
    }
    rows = conn.execute("EXPLAIN " + management._LIST, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_the_attribute_filter_is_served_by_the_gin_index(database_url: str, stub: Stub) -> None:
    # A few thousand workflows with a 200-byte input each (as an SDK start records its
    # arguments), 50 tenants, 500 orders: one tenant and order is a handful. VACUUM
    # flushes the GIN index's pending list (fastupdate), as autovacuum does: right after a
    # bulk insert, before that, the index looks dearer to the planner than it is, and on a
    # table this small it may scan instead (see docs/search-attributes.md).
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO durable.workflows (workflow_id, namespace, name, status,
                                              input_encoding, input_data, attributes)
               SELECT 'bulk-' || i, 'default', 'attrs.bulk',
                      CASE WHEN i % 3 = 0 THEN 'SUCCESS' ELSE 'PENDING' END,
                      'json', convert_to('"' || repeat('x', 198) || '"', 'UTF8'),
                      jsonb_build_object('tenant', 't' || (i % 50), 'order', (i % 500)::text,
                                         'region', CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END)
                 FROM generate_series(1, 5000) AS i"""
        )
        conn.execute("VACUUM ANALYZE durable.workflows")
        where = WorkflowFilter(attributes={"tenant": "t7", "order": "7"})
        plan = explain(conn, where)
        print(plan)
        assert "workflows_attributes_idx" in plan, plan
        with_status = WorkflowFilter(attributes={"order": "7"}, statuses=(Status.PENDING,))
        assert "workflows_attributes_idx" in explain(conn, with_status)
    found = listed(stub, attributes={"tenant": "t7", "order": "7"})
    assert found == {f"bulk-{i}" for i in range(1, 5001) if i % 500 == 7}


# --- two coordinators --------------------------------------------------------------------------


def test_set_through_one_coordinator_is_listed_through_another(
    coordinator: Coordinator, other_coordinator: Coordinator
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    a, b = coordinator.stub, other_coordinator.stub
    workflow_id = start_pending(a, name="attrs.two")
    assert listed(b, attributes={"tenant": tenant}) == set()
    set_attrs(a, workflow_id, 1, tenant=tenant)
    assert listed(b, attributes={"tenant": tenant}) == {workflow_id}
    assert attrs_of(b, workflow_id) == {"tenant": tenant}
    # A retry of the step through B is a replay: nothing changes.
    replay = set_attrs(b, workflow_id, 1, tenant="other")
    assert replay.already_recorded and dict(replay.attributes) == {"tenant": tenant}

    # Concurrent sets of one workflow through both merge, each into the other's result.
    async def both() -> list[pb.SetAttributesResponse]:
        addresses = (coordinator.address, other_coordinator.address)
        channels = [grpc.aio.insecure_channel(address) for address in addresses]
        try:
            calls = [
                coordinator_pb2_grpc.CoordinatorServiceStub(channel).SetAttributes(
                    pb.SetAttributesRequest(
                        workflow_id=workflow_id, step_id=10 + i, attributes={f"via{i}": "x"}
                    ),
                    timeout=RPC_TIMEOUT,
                )
                for i, channel in enumerate(channels)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            for channel in channels:
                await channel.close()

    results = asyncio.run(both())
    assert attrs_of(b, workflow_id) == {"tenant": tenant, "via0": "x", "via1": "x"}
    assert sorted(len(r.attributes) for r in results) == [2, 3]
