"""RunStep and SetEvent writes, batched by group commit (group_commit.py).

Each writer sends a lone request down the single-request path (steps.record,
events.set_event) and a batch as one set-based statement over unnest()ed arrays: one round
trip and one commit for the lot, with the same meaning per row as the single statement
(first writer wins per step, the WRITABLE guard, latest value + history + NOTIFY per
event). Rows the statement did not write are explained one by one afterwards, exactly as
the single path does (resolve_unrecorded): the step recorded first, or why not.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.types.numeric import Int4
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import CoordinatorError
from coordinator.store import events, rows, steps
from coordinator.store.group_commit import GroupCommit, RunAlone
from coordinator.store.records import Outcome, Payload, StepKind, StepRecord

T = TypeVar("T")
Req = TypeVar("Req")
Res = TypeVar("Res")

# Batches written at once per writer. One, as in classic group commit: whatever arrives
# while a batch commits goes in the next. More in flight means smaller batches, and on the
# 2-core box of bench/README.md RunStep capacity fell from ~1,700-1,900/s (one) to
# ~1,000-1,350/s (two to eight). A lone request still goes at once.
MAX_IN_FLIGHT = 1


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in rows.STEP_COLUMNS.split(","))


# steps.WRITABLE, per row of the batch instead of per statement.
_WRITABLE_ROW = (
    steps.WRITABLE.replace("%(wf)s", "input.wf")
    .replace("%(ns)s", "input.ns")
    .replace("%(exec)s", "input.exec")
)
assert not re.search(r"%\(\w+\)s", _WRITABLE_ROW), "WRITABLE has a parameter batches lack"

# The arrays go in binary (%(name)b): psycopg dumps them about four times faster than as
# text, which needs every element quoted and escaped.
_STEP_INPUT = """
SELECT * FROM unnest(%(ns)b::text[], %(wf)b::text[], %(exec)b::text[], %(step)b::int4[],
                     %(name)b::text[], %(out_enc)b::text[], %(out_data)b::bytea[],
                     %(err_type)b::text[], %(err_msg)b::text[], %(err_details)b::text[],
                     %(started_at)b::timestamptz[], %(attempts)b::int4[], %(kind)b::text[])
       WITH ORDINALITY AS input(ns, wf, exec, step, name, out_enc, out_data,
                                err_type, err_msg, err_details, started_at, attempts, kind,
                                ord)"""

# steps._RECORD for many rows. Rows are inserted in the order given (sorted by key, so
# concurrent batches take their locks in one order); `ord` maps results back.
_RECORD_MANY = f"""
WITH input AS ({_STEP_INPUT}
), written AS (
    INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                               output_encoding, output_data, error_type, error_message,
                               error_details, started_at, attempts)
    SELECT wf, ns, step, name, kind, out_enc, out_data, err_type, err_msg, err_details,
           started_at, attempts
      FROM input
     WHERE {_WRITABLE_ROW}
     ORDER BY ord
    ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
    RETURNING workflow_id, namespace, {rows.STEP_COLUMNS}
)
SELECT input.ord, {_qualified("written")}
  FROM written
  JOIN input ON (input.wf, input.ns, input.step)
              = (written.workflow_id, written.namespace, written.step_id)"""

_EVENT_INPUT = """
SELECT * FROM unnest(%(ns)b::text[], %(wf)b::text[], %(exec)b::text[], %(step)b::int4[],
                     %(key)b::text[], %(enc)b::text[], %(data)b::bytea[])
       WITH ORDINALITY AS input(ns, wf, exec, step, key, enc, data, ord)"""

_NOTIFY_MANY = events.notify(
    "fresh.ns",
    "fresh.wf",
    "fresh.key",
    "latest.version",
    "latest.encoding",
    "latest.data",
    "latest.set_at",
)

# events._SET for many rows: for each step recorded now, upsert the latest value, append
# history and NOTIFY. A batch never holds one key twice, so each upsert touches its row once.
_SET_MANY = f"""
WITH input AS ({_EVENT_INPUT}
), written AS (
    INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                               output_encoding, output_data)
    SELECT wf, ns, step, key, 'SET_EVENT', 'json', 'null'
      FROM input
     WHERE {_WRITABLE_ROW}
     ORDER BY ord
    ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
    RETURNING workflow_id, namespace, {rows.STEP_COLUMNS}
), fresh AS (
    SELECT input.*, written.recorded_at AS set_at
      FROM written
      JOIN input ON (input.wf, input.ns, input.step)
                  = (written.workflow_id, written.namespace, written.step_id)
), latest AS (
    INSERT INTO durable.events (workflow_id, namespace, key, version, encoding, data, set_at)
    SELECT wf, ns, key, 1, enc, data, set_at FROM fresh ORDER BY ord
    ON CONFLICT (workflow_id, namespace, key) DO UPDATE
       SET version = durable.events.version + 1,
           encoding = EXCLUDED.encoding, data = EXCLUDED.data, set_at = EXCLUDED.set_at
    RETURNING workflow_id, namespace, key, version, encoding, data, set_at
), history AS (
    INSERT INTO durable.event_history (workflow_id, namespace, key, version, step_id,
                                       encoding, data, set_at)
    SELECT latest.workflow_id, latest.namespace, latest.key, latest.version, fresh.step,
           latest.encoding, latest.data, latest.set_at
      FROM latest
      JOIN fresh ON (fresh.wf, fresh.ns, fresh.key)
                  = (latest.workflow_id, latest.namespace, latest.key)
)
SELECT fresh.ord, {_qualified("written")}, latest.version, {_NOTIFY_MANY}
  FROM fresh
  JOIN written ON (written.workflow_id, written.namespace, written.step_id)
                = (fresh.wf, fresh.ns, fresh.step)
  JOIN latest ON (latest.workflow_id, latest.namespace, latest.key)
               = (fresh.wf, fresh.ns, fresh.key)"""


@dataclass(frozen=True)
class StepWrite:
    """One RunStep's record, as steps.record takes it."""

    namespace: str
    workflow_id: str
    step_id: int
    name: str
    outcome: Outcome
    executor_id: str = ""
    started_at: datetime | None = None
    attempts: int = 1
    kind: StepKind = StepKind.STEP

    def keys(self) -> tuple[Hashable, ...]:
        return (("step", self.namespace, self.workflow_id, self.step_id),)


@dataclass(frozen=True)
class EventWrite:
    """One SetEvent, as events.set_event takes it."""

    namespace: str
    workflow_id: str
    step_id: int
    key: str
    value: Payload
    executor_id: str = ""

    def keys(self) -> tuple[Hashable, ...]:
        return (
            ("step", self.namespace, self.workflow_id, self.step_id),
            ("event", self.namespace, self.workflow_id, self.key),
        )


StepResult = tuple[StepRecord, bool]
EventResult = tuple[StepRecord, int | None]


async def record_one(pool: AsyncConnectionPool, write: StepWrite) -> StepResult:
    return await steps.record(
        pool,
        write.namespace,
        write.workflow_id,
        write.step_id,
        write.name,
        write.outcome,
        executor_id=write.executor_id,
        started_at=write.started_at,
        attempts=write.attempts,
        kind=write.kind,
    )


async def set_one(pool: AsyncConnectionPool, write: EventWrite) -> EventResult:
    return await events.set_event(
        pool,
        write.namespace,
        write.workflow_id,
        write.step_id,
        write.key,
        write.value,
        executor_id=write.executor_id,
    )


def _by_key(writes: Sequence[StepWrite] | Sequence[EventWrite]) -> list[int]:
    """Positions in key order: concurrent batches then lock rows in one order."""
    return sorted(
        range(len(writes)),
        key=lambda i: (writes[i].namespace, writes[i].workflow_id, writes[i].step_id),
    )


async def record_many(
    pool: AsyncConnectionPool, writes: Sequence[StepWrite]
) -> list[StepResult | Exception]:
    """Record several steps in one statement; per write its StepResult or its error.

    Raises RunAlone if the statement failed (nothing was written), OperationalError if the
    database is unreachable.
    """
    order = _by_key(writes)
    sorted_writes = [writes[i] for i in order]
    outcomes = [rows.outcome_columns(w.outcome) for w in sorted_writes]
    params: dict[str, Any] = {
        "ns": [w.namespace for w in sorted_writes],
        "wf": [w.workflow_id for w in sorted_writes],
        "exec": [w.executor_id for w in sorted_writes],
        "step": [Int4(w.step_id) for w in sorted_writes],
        "name": [w.name for w in sorted_writes],
        "started_at": [w.started_at for w in sorted_writes],
        "attempts": [Int4(w.attempts) for w in sorted_writes],
        "kind": [w.kind.value for w in sorted_writes],
        **{column: [o[column] for o in outcomes] for column in outcomes[0]},
    }
    return await _write_many(
        pool,
        _RECORD_MANY,
        params,
        order,
        [(w, w.kind, w.name) for w in writes],
        written=lambda row: (rows.step(row), False),
        recorded_before=lambda step: (step, True),
    )


async def set_many(
    pool: AsyncConnectionPool, writes: Sequence[EventWrite]
) -> list[EventResult | Exception]:
    """Set several events in one statement; per write its EventResult or its error.

    Raises as record_many does.
    """
    order = _by_key(writes)
    sorted_writes = [writes[i] for i in order]
    params: dict[str, Any] = {
        "ns": [w.namespace for w in sorted_writes],
        "wf": [w.workflow_id for w in sorted_writes],
        "exec": [w.executor_id for w in sorted_writes],
        "step": [Int4(w.step_id) for w in sorted_writes],
        "key": [w.key for w in sorted_writes],
        "enc": [w.value.encoding for w in sorted_writes],
        "data": [w.value.data for w in sorted_writes],
    }
    return await _write_many(
        pool,
        _SET_MANY,
        params,
        order,
        [(w, StepKind.SET_EVENT, w.key) for w in writes],
        written=lambda row: (rows.step(row), row[rows.STEP_WIDTH]),
        recorded_before=lambda step: (step, None),
    )


async def _write_many(
    pool: AsyncConnectionPool,
    query: str,
    params: dict[str, Any],
    order: list[int],
    writes: Sequence[tuple[StepWrite | EventWrite, StepKind, str]],
    *,
    written: Callable[[tuple[Any, ...]], T],
    recorded_before: Callable[[StepRecord], T],
) -> list[T | Exception]:
    """Run a batch statement whose rows start with their write's position in `order`
    (1-based, ordinality), then the written step's columns; each write without a row is
    explained as the single path does (resolve_unrecorded): recorded before, or why not.
    `writes` are in the callers' order, each with its step kind and name."""
    results: list[T | Exception | None] = [None] * len(writes)
    async with pool.connection() as conn:
        for row in await run_batch(conn, query, params):
            results[order[row[0] - 1]] = written(row[1:])
        for i, (write, kind, name) in enumerate(writes):
            if results[i] is not None:
                continue
            try:
                recorded = await steps.resolve_unrecorded(
                    conn,
                    write.namespace,
                    write.workflow_id,
                    write.step_id,
                    kind,
                    name,
                    write.executor_id,
                )
                results[i] = recorded_before(recorded)
            except CoordinatorError as exc:
                results[i] = exc
    return _complete(results)


def _complete(results: list[T | Exception | None]) -> list[T | Exception]:
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    return done


async def run_batch(
    conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The batch statement's rows. It runs alone in autocommit: one transaction, so if it
    fails nothing was written, and RunAlone says to write each request on its own."""
    try:
        cur = await conn.execute(query, params)
        return await cur.fetchall()
    except psycopg.OperationalError:
        raise  # the connection or the server: every request gets UNAVAILABLE
    except psycopg.Error as exc:
        raise RunAlone() from exc


class Writer(Generic[Req, Res]):
    """One kind of write: grouped into shared commits, or each alone when `max_batch` is 1."""

    def __init__(
        self,
        write_one: Callable[[Req], Awaitable[Res]],
        write_many: Callable[[Sequence[Req]], Awaitable[Sequence[Res | Exception]]],
        keys: Callable[[Req], Iterable[Hashable]],
        *,
        max_batch: int,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._write_one = write_one
        self._group = (
            GroupCommit[Req, Res](
                write_one,
                write_many,
                keys=keys,
                max_batch=max_batch,
                max_in_flight=MAX_IN_FLIGHT,
                observe=observe,
            )
            if max_batch > 1
            else None
        )

    async def write(self, request: Req) -> Res:
        if self._group is None:
            return await self._write_one(request)
        return await self._group.submit(request)


def step_writer(
    pool: AsyncConnectionPool, *, max_batch: int, observe: Callable[[int], None] | None = None
) -> Writer[StepWrite, StepResult]:
    """RunStep's writes."""
    return Writer(
        lambda w: record_one(pool, w),
        lambda ws: record_many(pool, ws),
        StepWrite.keys,
        max_batch=max_batch,
        observe=observe,
    )


def event_writer(
    pool: AsyncConnectionPool, *, max_batch: int, observe: Callable[[int], None] | None = None
) -> Writer[EventWrite, EventResult]:
    """SetEvent's writes."""
    return Writer(
        lambda w: set_one(pool, w),
        lambda ws: set_many(pool, ws),
        EventWrite.keys,
        max_batch=max_batch,
        observe=observe,
    )
