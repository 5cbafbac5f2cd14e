"""WatchWorkflows over real gRPC against real coordinator processes and Postgres: every
status change of the matching workflows, from now or after a cursor, across coordinators,
with no gap and no repeat however the stream is cut, and in an order no late commit can
get behind (docs/watch-workflows.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
import pytest

import durable
import durable.aio
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    Coordinator,
    Stub,
    duration,
    error_info,
    finish,
    free_port,
    new_id,
    payload,
    rpc_error,
    running_coordinator,
    scrape_metrics,
    start_pending,
)

Change = tuple[str, str]  # (workflow_id, status name)


def status_name(change: pb.WorkflowChange) -> str:
    return pb.WorkflowStatus.Name(change.workflow.status).removeprefix("WORKFLOW_STATUS_")


class Watch:
    """One WatchWorkflows stream read by a thread into a queue."""

    def __init__(self, stub: Stub, request: pb.WatchWorkflowsRequest) -> None:
        self.call = stub.WatchWorkflows(request)
        # The stream has started (its start position is fixed) once this arrives.
        self.start_cursor = str(dict(self.call.initial_metadata()).get("durable-watch-cursor", ""))
        self.got: queue.Queue[pb.WatchWorkflowsResponse | grpc.RpcError | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.got.put(response)
        except grpc.RpcError as err:
            self.got.put(err)
        self.got.put(None)

    def next(self, timeout: float = 10.0) -> pb.WatchWorkflowsResponse:
        item = self.got.get(timeout=timeout)
        assert isinstance(item, pb.WatchWorkflowsResponse), item
        return item

    def changes(self, count: int, timeout: float = 10.0) -> list[pb.WorkflowChange]:
        found = []
        for _ in range(count):
            response = self.next(timeout)
            assert response.WhichOneof("event") == "change", response
            found.append(response.change)
        return found

    def quiet(self, seconds: float = 0.5) -> bool:
        """Nothing arrives for `seconds`."""
        try:
            item = self.got.get(timeout=seconds)
        except queue.Empty:
            return True
        self.got.put(item)
        return False

    def cancel(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=10)


@pytest.fixture()
def watches() -> Iterator[list[Watch]]:
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.cancel()


def watch(
    stub: Stub,
    opened: list[Watch],
    *,
    after: str = "",
    timeout: float | None = None,
    **filter_fields: Any,
) -> Watch:
    request = pb.WatchWorkflowsRequest(
        filter=pb.ListWorkflowsRequest(**filter_fields), after_cursor=after
    )
    if timeout is not None:
        request.timeout.CopyFrom(duration(timeout))
    opened.append(Watch(stub, request))
    return opened[-1]


def as_pairs(found: list[pb.WorkflowChange]) -> list[Change]:
    return [(c.workflow.workflow_id, status_name(c)) for c in found]


def test_from_now_sees_each_change_of_matching_workflows_only(
    stub: Stub, watches: list[Watch]
) -> None:
    name = new_id("watch.name").replace("-", "_")
    before = start_pending(stub, name=name)
    seen = watch(stub, watches, name=name)
    assert seen.start_cursor

    mine = start_pending(stub, name=name)
    start_pending(stub, name=name + "_other")
    finish(stub, mine, {"big": "x" * 1000})
    finish(stub, before)

    found = seen.changes(3)
    assert as_pairs(found) == [(mine, "PENDING"), (mine, "SUCCESS"), (before, "SUCCESS")]
    assert all(c.workflow.name == name for c in found)
    # Without the input and output; with a cursor and the change's time, in order.
    assert not any(c.workflow.HasField("input") or c.workflow.HasField("output") for c in found)
    assert len({c.cursor for c in found}) == 3
    times = [c.change_time.ToDatetime() for c in found]
    assert times == sorted(times)
    assert seen.quiet()


def test_filters_by_status_queue_parent_and_attributes(
    stub: Stub, watches: list[Watch], database_url: str
) -> None:
    name = new_id("watch.filters").replace("-", "_")
    queue_name = new_id("q")
    by_status = watch(stub, watches, name=name, statuses=[pb.WORKFLOW_STATUS_SUCCESS])
    by_queue = watch(stub, watches, queue_name=queue_name)
    parent = start_pending(stub, name=name)
    by_parent = watch(stub, watches, parent_workflow_id=parent)
    by_attribute = watch(stub, watches, name=name, attributes={"tenant": "acme"})

    queued = new_id("queued")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=queued, name=name, input=payload(None), queue_name=queue_name
        )
    )
    child = new_id("child")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=child,
            name=name,
            input=payload(None),
            parent=pb.StepRef(workflow_id=parent, step_id=1),
        )
    )
    tagged = start_pending(stub, name=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE durable.workflows SET attributes = %s::jsonb WHERE workflow_id = %s",
            (json.dumps({"tenant": "acme", "plan": "gold"}), tagged),
        )
    finish(stub, tagged)
    finish(stub, child)

    assert as_pairs(by_status.changes(2)) == [(tagged, "SUCCESS"), (child, "SUCCESS")]
    assert as_pairs(by_queue.changes(1)) == [(queued, "ENQUEUED")]
    assert as_pairs(by_parent.changes(2)) == [(child, "PENDING"), (child, "SUCCESS")]
    # Attributes test the workflow as it is when the change is read: the start shows only
    # if read after the UPDATE set them; the finish always does.
    tagged_changes = by_attribute.changes(1)
    if as_pairs(tagged_changes) == [(tagged, "PENDING")]:
        tagged_changes = by_attribute.changes(1)
    assert as_pairs(tagged_changes) == [(tagged, "SUCCESS")]
    assert dict(tagged_changes[0].workflow.attributes) == {"tenant": "acme", "plan": "gold"}
    for quiet in (by_status, by_queue, by_parent, by_attribute):
        assert quiet.quiet(0.3)


def test_a_watch_on_one_coordinator_sees_changes_made_through_another(
    coordinator: Coordinator, other_coordinator: Coordinator, watches: list[Watch]
) -> None:
    name = new_id("watch.cross").replace("-", "_")
    seen = watch(other_coordinator.stub, watches, name=name)
    workflow_id = start_pending(coordinator.stub, name=name)
    finish(coordinator.stub, workflow_id)
    assert as_pairs(seen.changes(2)) == [(workflow_id, "PENDING"), (workflow_id, "SUCCESS")]


def test_the_stream_ends_with_timed_out(stub: Stub, watches: list[Watch]) -> None:
    began = time.monotonic()
    seen = watch(stub, watches, name="watch.nothing", timeout=0.4)
    assert seen.next().WhichOneof("event") == "timed_out"
    assert 0.35 < time.monotonic() - began < 5
    assert seen.got.get(timeout=5) is None  # the stream ended, OK


def test_resuming_with_the_last_cursor_misses_and_repeats_nothing(
    stub: Stub, coordinator: Coordinator, other_coordinator: Coordinator, watches: list[Watch]
) -> None:
    """Writers on both coordinators start and finish workflows while a reader is cut off
    every few changes and comes back (alternating coordinators) with its last cursor."""
    name = new_id("watch.resume").replace("-", "_")
    count = 120
    stubs = [coordinator.stub, other_coordinator.stub]
    first = watch(stub, watches, name=name)
    assert first.start_cursor
    cursor = first.start_cursor
    first.cancel()

    def write(i: int) -> str:
        target = stubs[i % 2]
        workflow_id = start_pending(target, name=name)
        finish(target, workflow_id)
        return workflow_id

    collected: list[Change] = []
    with ThreadPoolExecutor(8) as writers:
        started = writers.map(write, range(count))
        round_ = 0
        while len(collected) < 2 * count:
            seen = watch(stubs[round_ % 2], watches, name=name, after=cursor)
            round_ += 1
            try:
                found = seen.changes(min(7, 2 * count - len(collected)), timeout=30)
            finally:
                seen.cancel()
            collected += as_pairs(found)
            cursor = found[-1].cursor
        ids = list(started)

    assert len(collected) == len(set(collected)) == 2 * count
    assert set(collected) == {(w, s) for w in ids for s in ("PENDING", "SUCCESS")}
    # Each workflow's start comes before its finish.
    for workflow_id in ids:
        assert collected.index((workflow_id, "PENDING")) < collected.index((workflow_id, "SUCCESS"))


def test_a_change_committed_late_is_not_skipped(
    stub: Stub, watches: list[Watch], database_url: str
) -> None:
    """A transaction that took its seq first but commits last: the reader must not move
    past it. And a transaction open without any change holds the reader back only until it
    ends, though its end notifies nothing."""
    name = new_id("watch.late").replace("-", "_")
    early, late = start_pending(stub, name=name), start_pending(stub, name=name)
    seen = watch(stub, watches, name=name)

    with psycopg.connect(database_url) as slow, psycopg.connect(database_url) as idle:
        slow.execute(
            "UPDATE durable.workflows SET status = 'CANCELLED' WHERE workflow_id = %s", (early,)
        )
        finish(stub, late)  # a larger seq, committed first
        assert seen.quiet(0.5), "a change was delivered past an open transaction's"
        slow.commit()
        assert as_pairs(seen.changes(2)) == [(early, "CANCELLED"), (late, "SUCCESS")]

        third = new_id("third")
        idle.execute("SELECT pg_current_xact_id()")  # holds the horizon, changes nothing
        start_pending(stub, third, name=name)
        assert seen.quiet(0.3)
        idle.commit()  # no NOTIFY: the reader re-reads on its own while a change waits
        assert as_pairs(seen.changes(1, timeout=5)) == [(third, "PENDING")]


def test_a_cursor_whose_workflow_was_deleted_has_expired(
    stub: Stub, watches: list[Watch], database_url: str
) -> None:
    name = new_id("watch.expired").replace("-", "_")
    seen = watch(stub, watches, name=name)
    workflow_id = start_pending(stub, name=name)
    (change,) = seen.changes(1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM durable.workflows WHERE workflow_id = %s", (workflow_id,))
        left = conn.execute(
            "SELECT count(*) FROM durable.workflow_changes WHERE workflow_id = %s",
            (workflow_id,),
        ).fetchone()
    assert left == (0,)  # the log's rows went with their workflow

    request = pb.WatchWorkflowsRequest(after_cursor=change.cursor)
    err = rpc_error(lambda: list(stub.WatchWorkflows(request, timeout=10)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "CURSOR_EXPIRED"
    assert "from now" in (err.details() or "")


def hub_waiters(address: str) -> float:
    return scrape_metrics(address)[("durable_hub_waiters", frozenset())]


def test_cancelling_the_stream_frees_its_subscription(
    database_url: str, watches: list[Watch]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    with running_coordinator(database_url, "--metrics-listen", address) as coordinator:
        before = hub_waiters(address)
        seen = watch(coordinator.stub, watches, name="watch.cancel")
        assert hub_waiters(address) == before + 1
        seen.cancel()
        deadline = time.monotonic() + 10
        while hub_waiters(address) != before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hub_waiters(address) == before


# --- the SDK: durable.watch_workflows and durable.aio.watch_workflows ------------------------


def test_the_sdk_iterates_changes_as_dataclasses(coordinator: Coordinator) -> None:
    name = new_id("watch.sdk").replace("-", "_")
    client = durable.Client(coordinator.address)
    try:
        changes = durable.watch_workflows(name=name, timeout=10, client=client)
        got: queue.Queue[durable.WorkflowChange] = queue.Queue()

        def read() -> None:
            with contextlib.suppress(durable.DurableError):  # ends with the client
                for c in changes:
                    got.put(c)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.3)  # the stream opens "from now"
        workflow_id = start_pending(coordinator.stub, name=name)
        finish(coordinator.stub, workflow_id)
        first, second = got.get(timeout=10), got.get(timeout=10)
        assert isinstance(first, durable.WorkflowChange)
        assert (first.workflow_id, first.name, first.status) == (
            workflow_id,
            name,
            durable.WorkflowStatus.PENDING,
        )
        assert second.status is durable.WorkflowStatus.SUCCESS
        assert second.workflow.workflow_id == workflow_id and second.workflow.output is None
        assert first.changed_at <= second.changed_at and second.changed_at.tzinfo is not None
        # Resuming after the first change gives the second again, and nothing before it.
        again = durable.watch_workflows(name=name, after=first.cursor, timeout=1, client=client)
        assert [c.cursor for c in again] == [second.cursor]
    finally:
        client.close()


def test_the_sdk_reconnects_after_a_coordinator_restart_without_gaps_or_repeats(
    database_url: str, other_coordinator: Coordinator
) -> None:
    name = new_id("watch.restart").replace("-", "_")
    watched = Coordinator(database_url)
    watched.wait_serving()
    client = durable.Client(watched.address, retry=durable.RetryPolicy(total_seconds=60))
    got: queue.Queue[durable.WorkflowChange] = queue.Queue()

    def read() -> None:
        with contextlib.suppress(durable.DurableError):
            for c in durable.watch_workflows(name=name, timeout=60, client=client):
                got.put(c)
                if got.qsize() == 15:
                    return

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        time.sleep(0.3)
        ids = [start_pending(other_coordinator.stub, name=name) for _ in range(5)]
        assert got.get(timeout=10).workflow_id == ids[0]
        watched.stop()  # the stream breaks (SHUTTING_DOWN), then connections are refused
        ids += [start_pending(other_coordinator.stub, name=name) for _ in range(5)]
        watched = Coordinator(database_url, port=watched.port)
        watched.wait_serving()
        ids += [start_pending(other_coordinator.stub, name=name) for _ in range(5)]
        rest = [got.get(timeout=30).workflow_id for _ in range(14)]
        assert [ids[0], *rest] == ids
        reader.join(timeout=10)
    finally:
        client.close()
        watched.stop()


def test_the_async_face_watches_too(coordinator: Coordinator) -> None:
    name = new_id("watch.aio").replace("-", "_")

    async def main() -> list[tuple[str, durable.WorkflowStatus]]:
        client = durable.aio.AsyncClient(coordinator.address)
        try:
            found: list[tuple[str, durable.WorkflowStatus]] = []

            async def read() -> None:
                async for c in durable.aio.watch_workflows(name=name, timeout=10, client=client):
                    found.append((c.workflow_id, c.status))
                    if len(found) == 2:
                        return

            task = asyncio.create_task(read())
            await asyncio.sleep(0.3)
            workflow_id = await asyncio.to_thread(start_pending, coordinator.stub, None, name)
            await asyncio.to_thread(finish, coordinator.stub, workflow_id)
            await asyncio.wait_for(task, 10)
            assert [w for w, _ in found] == [workflow_id, workflow_id]
            return found
        finally:
            await client.close()

    statuses = [s for _, s in asyncio.run(main())]
    assert statuses == [durable.WorkflowStatus.PENDING, durable.WorkflowStatus.SUCCESS]


# --- the CLI: durable workflows watch --------------------------------------------------------


def test_the_cli_prints_changes_after_a_cursor_as_lines_or_json(
    stub: Stub, coordinator: Coordinator, watches: list[Watch]
) -> None:
    from tests.test_cli import fails, ok

    name = new_id("watch.cli").replace("-", "_")
    seen = watch(stub, watches, name=name)
    first = start_pending(stub, name=name)
    second = start_pending(stub, name=name)
    finish(stub, second)
    (cursor, *_) = [c.cursor for c in seen.changes(3)]

    lines = ok(
        coordinator,
        "workflows",
        "watch",
        "--name",
        name,
        "--after",
        cursor,
        "--timeout",
        "0.5",
        "--json",
    ).splitlines()
    printed = [json.loads(line) for line in lines]
    assert [(p["workflow_id"], p["status"]) for p in printed] == [
        (second, "PENDING"),
        (second, "SUCCESS"),
    ]
    assert all(p["name"] == name and p["cursor"] for p in printed)

    text = ok(
        coordinator,
        "workflows",
        "watch",
        "--name",
        name,
        "--status",
        "SUCCESS",
        "--after",
        cursor,
        "--timeout",
        "0.5",
    )
    (line,) = text.splitlines()
    assert "SUCCESS" in line and second in line and first not in line

    assert "after_cursor" in fails(
        coordinator, "workflows", "watch", "--after", "nope", "--timeout", "1"
    )
