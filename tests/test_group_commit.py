"""Group commit: the batching machinery with fake writers, and the batched statements of
RunStep and SetEvent against a real database (same answers as one request at a time)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import NotOwner, StepNameMismatch, WorkflowNotFound, WorkflowNotPending
from coordinator.store import batched, db, events
from coordinator.store.group_commit import GroupCommit, RunAlone
from coordinator.store.records import Failure, Payload, StepKind
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    RPC_TIMEOUT,
    Stub,
    error_info,
    new_id,
    payload,
    rpc_error,
    set_event,
    value_of,
)

T = TypeVar("T")
NS = "default"


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=30))


# --- the machinery, with fakes ---------------------------------------------------------------


class FakeStore:
    """Writes that finish only when the test releases them, recording how they were sent."""

    def __init__(self) -> None:
        self.alone: list[str] = []
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.fail_alone: set[str] = set()
        self.batch_error: Exception | None = None
        self._changed = asyncio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until `check()` holds, looking again after every write that starts."""
        while not check():
            self._changed.clear()
            await self._changed.wait()

    async def write_one(self, request: str) -> str:
        self.alone.append(request)
        self.started.set()
        self._changed.set()
        await self.release.wait()
        if request in self.fail_alone:
            raise ValueError(request)
        return request.upper()

    async def write_batch(self, requests: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(requests))
        self.started.set()
        self._changed.set()
        await self.release.wait()
        if self.batch_error is not None:
            raise self.batch_error
        return [r.upper() for r in requests]


def committer(
    store: FakeStore,
    *,
    max_batch: int = 100,
    max_in_flight: int = 1,
    keys: Callable[[str], Sequence[Hashable]] = lambda r: (r,),
    sizes: list[int] | None = None,
) -> GroupCommit[str, str]:
    return GroupCommit(
        store.write_one,
        store.write_batch,
        keys=keys,
        max_batch=max_batch,
        max_in_flight=max_in_flight,
        observe=None if sizes is None else sizes.append,
    )


async def first_write_held(store: FakeStore, group: GroupCommit[str, str]) -> asyncio.Task[str]:
    """Submit "first" and hold its write open until store.release is set."""
    store.release.clear()
    task = asyncio.ensure_future(group.submit("first"))
    await store.started.wait()
    return task


async def until_queued(group: GroupCommit[str, str], count: int) -> None:
    # Tasks just created run their submit() up to its wait in the loop's next pass.
    await asyncio.sleep(0)
    assert group.queued == count


def test_a_lone_request_is_written_at_once_on_the_single_path() -> None:
    async def scenario() -> tuple[str, FakeStore]:
        store = FakeStore()
        return await committer(store).submit("a"), store

    result, store = run(scenario)
    assert result == "A"
    assert store.alone == ["a"]
    assert store.batches == []


def test_requests_arriving_during_a_write_share_the_next_one() -> None:
    async def scenario() -> tuple[list[str], FakeStore, list[int]]:
        store, sizes = FakeStore(), list[int]()
        group = committer(store, sizes=sizes)
        first = await first_write_held(store, group)
        rest = [asyncio.ensure_future(group.submit(r)) for r in ("b", "c", "d")]
        await until_queued(group, 3)
        assert store.batches == []  # nothing starts while the first write holds the slot
        store.release.set()
        return [await first, *await asyncio.gather(*rest)], store, sizes

    results, store, sizes = run(scenario)
    assert results == ["FIRST", "B", "C", "D"]
    assert store.alone == ["first"]
    assert store.batches == [["b", "c", "d"]]
    assert sizes == [1, 3]


def test_batches_are_capped_at_max_batch() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        group = committer(store, max_batch=2)
        first = await first_write_held(store, group)
        rest = [asyncio.ensure_future(group.submit(r)) for r in "bcde"]
        await until_queued(group, 4)
        store.release.set()
        await asyncio.gather(first, *rest)
        return store

    store = run(scenario)
    assert store.batches == [["b", "c"], ["d", "e"]]


def test_a_second_batch_starts_while_one_is_in_flight_when_allowed() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        group = committer(store, max_in_flight=2)
        first = await first_write_held(store, group)
        second = asyncio.ensure_future(group.submit("second"))
        await store.until(lambda: len(store.alone) == 2)
        assert group.in_flight == 2
        store.release.set()
        await asyncio.gather(first, second)
        return store

    assert run(scenario).alone == ["first", "second"]


def test_writes_to_the_same_key_never_share_a_batch() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        # "x1" and "x2" touch the same row "x": the second waits for the next batch.
        group = committer(store, keys=lambda r: (r[0],))
        first = await first_write_held(store, group)
        others = [asyncio.ensure_future(group.submit(r)) for r in ("x1", "y", "x2", "z")]
        await until_queued(group, 4)
        store.release.set()
        await asyncio.gather(first, *others)
        return store

    store = run(scenario)
    assert store.batches == [["x1", "y", "z"]]
    assert store.alone == ["first", "x2"]


def test_writes_to_the_same_key_never_overlap() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        group = committer(store, max_in_flight=2, keys=lambda r: (r[0],))
        first = await first_write_held(store, group)  # key "f"
        again = asyncio.ensure_future(group.submit("f2"))
        other = asyncio.ensure_future(group.submit("g"))
        await store.until(lambda: len(store.alone) == 2)
        # The free slot went to "g"; "f2" waits for "first" although a slot was free.
        assert store.alone == ["first", "g"]
        assert group.queued == 1
        store.release.set()
        await asyncio.gather(first, again, other)
        return store

    assert run(scenario).alone == ["first", "g", "f2"]


def test_a_failed_batch_is_written_one_by_one_so_a_bad_request_fails_alone() -> None:
    async def scenario() -> tuple[list[Any], FakeStore]:
        store = FakeStore()
        store.batch_error = RunAlone()
        store.fail_alone = {"bad"}
        group = committer(store)
        first = await first_write_held(store, group)
        rest = [asyncio.ensure_future(group.submit(r)) for r in ("b", "bad", "c")]
        await until_queued(group, 3)
        store.release.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        return results, store

    results, store = run(scenario)
    assert results[:2] == ["FIRST", "B"]
    assert isinstance(results[2], ValueError)
    assert results[3] == "C"
    assert store.alone == ["first", "b", "bad", "c"]


def test_any_other_batch_failure_is_every_requests_answer() -> None:
    async def scenario() -> list[Any]:
        store = FakeStore()
        store.batch_error = psycopg.OperationalError("server closed the connection")
        group = committer(store)
        first = await first_write_held(store, group)
        rest = [asyncio.ensure_future(group.submit(r)) for r in ("b", "c")]
        await until_queued(group, 2)
        store.release.set()
        await first
        return await asyncio.gather(*rest, return_exceptions=True)

    results = run(scenario)
    assert all(isinstance(r, psycopg.OperationalError) for r in results)


def test_a_request_cancelled_while_queued_is_never_written() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        group = committer(store)
        first = await first_write_held(store, group)
        gone = asyncio.ensure_future(group.submit("gone"))
        kept = [asyncio.ensure_future(group.submit(r)) for r in ("b", "c")]
        await until_queued(group, 3)
        gone.cancel()
        store.release.set()
        await asyncio.gather(first, *kept)
        assert gone.cancelled()
        return store

    store = run(scenario)
    assert store.batches == [["b", "c"]]


def test_settings_are_checked() -> None:
    store = FakeStore()
    with pytest.raises(ValueError):
        committer(store, max_batch=0)
    with pytest.raises(ValueError):
        committer(store, max_in_flight=0)


# --- the batched statements, on a real database ----------------------------------------------


@asynccontextmanager
async def open_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    await db.migrate(database_url)
    pool = await db.open_pool(database_url, 1, 4)
    try:
        yield pool
    finally:
        await pool.close()


def out(value: Any) -> Payload:
    return Payload("json", json.dumps(value).encode())


def step(workflow_id: str, step_id: int, value: Any = 1, **kw: Any) -> batched.StepWrite:
    return batched.StepWrite(NS, workflow_id, step_id, kw.pop("name", "s"), out(value), **kw)


async def new_workflow(
    pool: AsyncConnectionPool, executor_id: str = "", status: str = "PENDING"
) -> str:
    """A workflow row as StartWorkflow leaves it (written directly: only its status and
    executor matter to the writes under test)."""
    workflow_id = new_id()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO durable.workflows (workflow_id, namespace, name, status, executor_id)"
            " VALUES (%s, %s, 'wf', %s, %s)",
            (workflow_id, NS, status, executor_id or None),
        )
    return workflow_id


def test_record_many_answers_each_write_as_record_would(database_url: str) -> None:
    async def scenario() -> None:
        async with open_pool(database_url) as pool:
            a, b = await new_workflow(pool), await new_workflow(pool, executor_id="exec-1")
            done = await new_workflow(pool, status="SUCCESS")
            await batched.record_one(pool, step(a, 1, "first"))
            results = await batched.record_many(
                pool,
                [
                    step(a, 2, 2),
                    step(a, 1, "second"),  # recorded before: the first outcome comes back
                    step(b, 1, executor_id="exec-1"),
                    step(b, 2, executor_id="exec-2"),  # not b's executor
                    step(done, 1),  # finished
                    step("missing", 1),
                    step(a, 1, name="other"),  # a different operation at a recorded position
                    batched.StepWrite(NS, a, 3, "s", Failure("E", "boom", "")),
                ],
            )
            recorded_2, already_2 = results[0]  # type: ignore[misc]
            assert (recorded_2.step_id, recorded_2.outcome, already_2) == (2, out(2), False)
            recorded_1, already_1 = results[1]  # type: ignore[misc]
            assert (recorded_1.outcome, already_1) == (out("first"), True)
            assert results[2][1] is False  # type: ignore[index]
            assert isinstance(results[3], NotOwner)
            assert isinstance(results[4], WorkflowNotPending)
            assert isinstance(results[5], WorkflowNotFound)
            assert isinstance(results[6], StepNameMismatch)
            failed, _ = results[7]  # type: ignore[misc]
            assert failed.outcome == Failure("E", "boom", "")
            assert failed.kind is StepKind.STEP

    run(scenario)


def test_batches_keep_awkward_values_exactly(database_url: str) -> None:
    """The batch statements take their arrays in binary: quotes, braces, commas, the text
    NULL, non-ASCII and raw bytes come back as they went in."""
    names = ["ü😀'\"\\{},", "NULL", " spaced "]
    data = [b"\x00\x01\xff'\\", b"NULL", b"{}"]

    async def scenario() -> None:
        async with open_pool(database_url) as pool:
            a = await new_workflow(pool)
            steps_written = await batched.record_many(
                pool,
                [
                    *(
                        batched.StepWrite(NS, a, n, name, Payload("bin", value))
                        for n, (name, value) in enumerate(zip(names, data, strict=True), start=1)
                    ),
                    batched.StepWrite(NS, a, 4, "e", Failure("T", names[0], names[1])),
                ],
            )
            assert [r[0].name for r in steps_written[:3]] == names  # type: ignore[index]
            assert [r[0].outcome for r in steps_written[:3]] == [  # type: ignore[index]
                Payload("bin", value) for value in data
            ]
            assert steps_written[3][0].outcome == Failure("T", names[0], names[1])  # type: ignore[index]
            events_set = await batched.set_many(
                pool,
                [
                    batched.EventWrite(NS, a, 10 + n, name, Payload("bin", value))
                    for n, (name, value) in enumerate(zip(names, data, strict=True))
                ],
            )
            assert [r[1] for r in events_set] == [1, 1, 1]  # type: ignore[index]
            for name, value in zip(names, data, strict=True):
                snapshot = await events.read(pool, NS, a, name, 0, from_history=False)
                assert [v.value for v in snapshot.values] == [Payload("bin", value)]

    run(scenario)


def test_record_many_fails_with_run_alone_when_a_row_breaks_the_statement(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with open_pool(database_url) as pool:
            a = await new_workflow(pool)
            with pytest.raises(RunAlone):
                # attempts must be > 0 (a CHECK): the whole statement fails...
                await batched.record_many(pool, [step(a, 1), step(a, 2, attempts=0)])
            # ...and wrote nothing.
            result, already = await batched.record_one(pool, step(a, 1, "later"))
            assert (result.outcome, already) == (out("later"), False)

    run(scenario)


def test_set_many_sets_versions_history_and_notifies(database_url: str) -> None:
    async def scenario() -> None:
        async with open_pool(database_url) as pool:
            a, b = await new_workflow(pool), await new_workflow(pool)
            listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
            await listener.execute(f"LISTEN {events.EVENT_CHANNEL}")
            await batched.set_one(pool, batched.EventWrite(NS, a, 1, "k", out(0)))
            results = await batched.set_many(
                pool,
                [
                    batched.EventWrite(NS, a, 2, "k", out(1)),
                    batched.EventWrite(NS, b, 1, "k", out(2)),
                    batched.EventWrite(NS, a, 3, "other", out(3)),
                    batched.EventWrite(NS, a, 1, "k", out(9)),  # a replay: nothing set
                    batched.EventWrite(NS, "missing", 1, "k", out(4)),
                ],
            )
            versions = [r[1] if isinstance(r, tuple) else r for r in results]
            assert versions[:4] == [2, 1, 1, None]
            assert isinstance(versions[4], WorkflowNotFound)
            snapshot = await events.read(pool, NS, a, "k", 0, from_history=True)
            assert [(v.version, v.value) for v in snapshot.values] == [(1, out(0)), (2, out(1))]
            heard = []
            async for note in listener.notifies(timeout=5, stop_after=4):
                heard.append(json.loads(note.payload))
            await listener.close()
            assert sorted((n["w"] == a, n["k"], n["v"]) for n in heard) == [
                (False, "k", 1),
                (True, "k", 1),
                (True, "k", 2),
                (True, "other", 1),
            ]

    run(scenario)


def test_writers_batch_concurrent_requests(database_url: str) -> None:
    async def scenario() -> list[int]:
        async with open_pool(database_url) as pool:
            sizes: list[int] = []
            writer = batched.step_writer(pool, max_batch=50, observe=sizes.append)
            ids = [await new_workflow(pool) for _ in range(20)]
            results = await asyncio.gather(*(writer.write(step(w, 1, w)) for w in ids))
            assert [r.outcome for r, _ in results] == [out(w) for w in ids]
            assert not any(already for _, already in results)
            return sizes

    sizes = run(scenario)
    assert sum(sizes) == 20
    assert max(sizes) > 1  # 20 at once cannot all have gone one by one


# --- through a coordinator: concurrent RunStep and SetEvent calls ------------------------------


def test_concurrent_writes_through_the_coordinator_keep_their_answers(
    stub: Stub, pool: ThreadPoolExecutor
) -> None:
    ids = [new_id() for _ in range(16)]
    for workflow_id in ids:
        stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=workflow_id, name="wf", input=payload({})),
            timeout=RPC_TIMEOUT,
        )

    def run_step(workflow_id: str, value: str) -> pb.RunStepResponse:
        request = pb.RunStepRequest(
            workflow_id=workflow_id, step_id=1, name="s", output=payload(value)
        )
        reply: pb.RunStepResponse = stub.RunStep(request, timeout=RPC_TIMEOUT)
        return reply

    # Two runs race to record step 1 of each workflow, with events and a bad call mixed in.
    steps = [pool.submit(run_step, w, run) for w in ids for run in ("a", "b")]
    sets = [pool.submit(set_event, stub, w, 2, "k", i) for i, w in enumerate(ids)]
    bad = pool.submit(run_step, new_id("missing"), "a")
    for first, second in zip(steps[::2], steps[1::2], strict=True):
        one, two = first.result(), second.result()
        # First writer wins: one of them recorded, both got that record back.
        assert sorted([one.already_recorded, two.already_recorded]) == [False, True]
        assert value_of(one.step.output) == value_of(two.step.output)
    assert [s.result().version for s in sets] == [1] * len(ids)
    assert error_info(rpc_error(bad.result)).reason == "WORKFLOW_NOT_FOUND"
