"""Operating on workflows from outside: cancel, resume, fork, timeouts, listing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import InvalidArgument, QueueDeduplicated, WorkflowFinished
from coordinator.store import rows
from coordinator.store.filters import WorkflowFilter
from coordinator.store.records import EventEntry, EventValue, Payload, Status, WorkflowRecord
from coordinator.store.workers import WORK_CHANNEL
from coordinator.store.workflows import DEDUP_INDEX, WORKFLOW_CHANNEL, dedup_holder, get

T = TypeVar("T")

_NOTIFY_STATUS = f"""
SELECT pg_notify('{WORKFLOW_CHANNEL}', json_build_object('n', %(ns)s::text, 'w', w)::text)
  FROM unnest(%(ids)s::text[]) AS w"""

NOTIFY_WORK = f"SELECT pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text)"

# What cancel and resume apply to, and what they set: shared with the bulk actions
# (store/bulk.py), which behave as these calls made once per workflow.
CANCELLABLE = (Status.ENQUEUED, Status.PENDING)
RESUMABLE = (Status.CANCELLED, Status.DEAD_LETTER)
CANCEL_SET = "status = 'CANCELLED', updated_at = clock_timestamp()"
# A resumed workflow keeps its due time (a delayed one not due yet still waits) and leaves
# its debounce burst: later starts with its key neither merge into it nor collide with it
# (workflows_debounce_idx holds one waiting workflow per key).
RESUME_SET = """status = 'ENQUEUED', executor_id = NULL, recovery_attempts = 0, deadline_at = NULL,
       debounce_key = NULL, updated_at = clock_timestamp()"""

_CANCEL = f"""
UPDATE durable.workflows SET {CANCEL_SET}
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status IN ('PENDING', 'ENQUEUED')
RETURNING {rows.WORKFLOW_COLUMNS}"""

_RESUME = f"""
UPDATE durable.workflows
   SET {RESUME_SET}
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status IN ('CANCELLED', 'DEAD_LETTER')
RETURNING {rows.WORKFLOW_COLUMNS}"""

# Timeouts: every coordinator runs this now and then; racing runs are harmless.
_CANCEL_EXPIRED = """
UPDATE durable.workflows SET status = 'CANCELLED', updated_at = clock_timestamp()
 WHERE deadline_at <= clock_timestamp() AND status IN ('PENDING', 'ENQUEUED')
RETURNING namespace, workflow_id"""

# A fork keeps the original's search attributes as they are now (those set by steps it
# re-runs are set again, merged into them), so it is found by the same business keys;
# `forked_from` tells it apart.
_FORK_WORKFLOW = f"""
INSERT INTO durable.workflows (workflow_id, namespace, name, status, input_encoding, input_data,
                               forked_from, app_version, attributes)
SELECT %(new)s, namespace, name, 'ENQUEUED', input_encoding, input_data, workflow_id,
       coalesce(NULLIF(%(version)s, ''), app_version), attributes
  FROM durable.workflows WHERE workflow_id = %(wf)s AND namespace = %(ns)s
ON CONFLICT (workflow_id, namespace) DO NOTHING
RETURNING {rows.WORKFLOW_COLUMNS}"""

# Every column but the workflow's ID: a copied SLEEP keeps its wake-up time, a RECV or
# GET_EVENT its deadline and whether it timed out.
_FORK_STEPS = """
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind, output_encoding,
                           output_data, error_type, error_message, error_details, recorded_at,
                           started_at, attempts, deadline_at, timed_out)
SELECT %(new)s, namespace, step_id, name, kind, output_encoding, output_data, error_type,
       error_message, error_details, recorded_at, started_at, attempts, deadline_at, timed_out
  FROM durable.steps
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id < %(start)s"""

# The events the copied steps set: their history, and the latest of it per key.
_FORK_EVENT_HISTORY = """
INSERT INTO durable.event_history (workflow_id, namespace, key, version, step_id, encoding,
                                   data, set_at)
SELECT %(new)s, namespace, key, version, step_id, encoding, data, set_at
  FROM durable.event_history
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id < %(start)s"""

_FORK_EVENTS = """
INSERT INTO durable.events (workflow_id, namespace, key, version, encoding, data, set_at)
SELECT DISTINCT ON (key) workflow_id, namespace, key, version, encoding, data, set_at
  FROM durable.event_history
 WHERE workflow_id = %(new)s AND namespace = %(ns)s
 ORDER BY key, version DESC"""

_LIST = f"""
SELECT {rows.WORKFLOW_COLUMNS} FROM durable.workflows w
 WHERE namespace = %(ns)s
   AND {WorkflowFilter().where("w")}
   AND (%(cursor_time)s::timestamptz IS NULL
        OR (created_at, workflow_id) < (%(cursor_time)s, %(cursor_id)s))
 ORDER BY created_at DESC, workflow_id DESC
 LIMIT %(limit)s"""

_EVENTS = """
SELECT key, version, encoding, data, set_at FROM durable.events
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND key > %(after)s
 ORDER BY key"""

# Rows are read through a server-side cursor this many at a time, so a page of large
# payloads never has to sit in memory whole before it is cut at the byte budget.
_FETCH_BATCH = 20


async def notify_status_on(conn: AsyncConnection[object], namespace: str, ids: list[str]) -> None:
    """Wake every coordinator's waiters on these workflows, when `conn` commits."""
    if ids:
        await conn.execute(_NOTIFY_STATUS, {"ns": namespace, "ids": ids})


async def notify_status(pool: AsyncConnectionPool, namespace: str, ids: list[str]) -> None:
    """Wake every coordinator's waiters on these workflows (their status changed)."""
    async with pool.connection() as conn:
        await notify_status_on(conn, namespace, ids)


async def cancel(pool: AsyncConnectionPool, namespace: str, workflow_id: str) -> WorkflowRecord:
    """Cancel a PENDING or ENQUEUED workflow; a finished one comes back unchanged."""
    params = {"ns": namespace, "wf": workflow_id}
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CANCEL, params)
        row = await cur.fetchone()
        if row is not None:
            await notify_status_on(conn, namespace, [workflow_id])
            cancelled = rows.workflow(row)
            if cancelled.queue_name is not None:
                # A slot of its queue may be free now: wake the pollers.
                await conn.execute(NOTIFY_WORK, params)
            return cancelled
    return await get(pool, namespace, workflow_id)


async def resume(pool: AsyncConnectionPool, namespace: str, workflow_id: str) -> WorkflowRecord:
    """Make a CANCELLED or DEAD_LETTER workflow ENQUEUED for a worker to continue."""
    params = {"ns": namespace, "wf": workflow_id}
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                cur = await conn.execute(_RESUME, params)
                row = await cur.fetchone()
                if row is not None:
                    await conn.execute(NOTIFY_WORK, params)
                    return rows.workflow(row)
        except psycopg.errors.UniqueViolation as exc:
            # Its queue's deduplication ID, freed when it was cancelled, is held again.
            if exc.diag.constraint_name != DEDUP_INDEX:
                raise
            record = await get(pool, namespace, workflow_id)
            assert record.queue_name is not None and record.deduplication_id is not None
            holder = await dedup_holder(conn, namespace, record.queue_name, record.deduplication_id)
            raise QueueDeduplicated(
                record.queue_name, record.deduplication_id, holder or ""
            ) from None
    current = await get(pool, namespace, workflow_id)
    if current.status in (Status.SUCCESS, Status.ERROR):
        raise WorkflowFinished(workflow_id, current.status.value)
    return current


async def fork(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    start_step_id: int,
    new_id: str,
    app_version: str = "",
) -> WorkflowRecord:
    """A new ENQUEUED workflow reusing the outcomes of steps before `start_step_id`, on
    `app_version` ('' for the original's)."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "new": new_id,
        "start": start_step_id,
        "version": app_version,
    }
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_FORK_WORKFLOW, params)
        row = await cur.fetchone()
        if row is None:
            await get(pool, namespace, workflow_id)  # WorkflowNotFound for a missing source
            # The new ID exists already: a repeated fork returns the first one.
            existing = await get(pool, namespace, new_id)
            if existing.forked_from != workflow_id:
                raise InvalidArgument("new_workflow_id", "already names another workflow")
            return existing
        await conn.execute(_FORK_STEPS, params)
        await conn.execute(_FORK_EVENT_HISTORY, params)
        await conn.execute(_FORK_EVENTS, params)
        await conn.execute(NOTIFY_WORK, params)
        return rows.workflow(row)


async def cancel_expired(pool: AsyncConnectionPool) -> list[tuple[str, str]]:
    """Cancel every unfinished workflow past its deadline; returns (namespace, id) pairs."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CANCEL_EXPIRED)
        expired: list[tuple[str, str]] = [(ns, wf) for ns, wf in await cur.fetchall()]
        for namespace in {ns for ns, _ in expired}:
            await notify_status_on(conn, namespace, [wf for ns, wf in expired if ns == namespace])
    return expired


def _encode_cursor(record: WorkflowRecord) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.workflow_id])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        created, workflow_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        if "\x00" in str(workflow_id):
            raise ValueError("Postgres text cannot hold NUL")
        return datetime.fromisoformat(created), str(workflow_id)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("page_token", "not a token from a previous page") from exc


def _size(record: WorkflowRecord) -> int:
    """About how many bytes the workflow takes in a reply."""
    size = 256 + len(record.workflow_id) + len(record.name.encode())
    for value in (record.input, record.result):
        if isinstance(value, Payload):
            size += len(value.data) + len(value.encoding)
        elif value is not None:
            size += sum(len(text.encode()) for text in (value.type, value.message, value.details))
    return size


async def list_workflows(
    pool: AsyncConnectionPool,
    namespace: str,
    where: WorkflowFilter,
    *,
    limit: int,
    page_token: str,
    byte_budget: int,
) -> tuple[list[WorkflowRecord], str]:
    """A page of workflows, newest first, and the token of the next page ('' at the end).

    The page holds at most `limit` workflows and `byte_budget` bytes, but at least one
    workflow: inputs and outputs are included, so without the budget a page of large ones
    would be over the gRPC message limit."""
    cursor_time, cursor_id = _decode_cursor(page_token) if page_token else (None, "")
    params = {
        "ns": namespace,
        **where.params(),
        "cursor_time": cursor_time,
        "cursor_id": cursor_id,
        # One more than a page, to tell whether another page follows.
        "limit": limit + 1,
    }
    found, more = await _read_page(
        pool, _LIST, params, rows.workflow, _size, limit=limit, byte_budget=byte_budget
    )
    return found, _encode_cursor(found[-1]) if more else ""


def _event_entry(row: rows.Row) -> EventEntry:
    key, version, encoding, data, set_at = row
    return EventEntry(key, EventValue(version, Payload(encoding, bytes(data)), set_at))


def _event_size(entry: EventEntry) -> int:
    return 128 + len(entry.key.encode()) + len(entry.value.value.data)


async def list_events(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    *,
    page_token: str,
    byte_budget: int,
) -> tuple[list[EventEntry], str]:
    """A page of the workflow's events by key, about `byte_budget` bytes (at least one
    event), and the token of the next page ('' at the end)."""
    await get(pool, namespace, workflow_id)  # WorkflowNotFound
    after = ""
    if page_token:
        try:
            after = base64.urlsafe_b64decode(page_token.encode()).decode()
        except ValueError as exc:
            raise InvalidArgument("page_token", "not a token from a previous page") from exc
        if "\x00" in after:
            raise InvalidArgument("page_token", "not a token from a previous page")
    params = {"ns": namespace, "wf": workflow_id, "after": after}
    found, more = await _read_page(
        pool, _EVENTS, params, _event_entry, _event_size, limit=None, byte_budget=byte_budget
    )
    token = base64.urlsafe_b64encode(found[-1].key.encode()).decode() if more else ""
    return found, token


async def _read_page(
    pool: AsyncConnectionPool,
    query: str,
    params: dict[str, Any],
    convert: Callable[[rows.Row], T],
    size_of: Callable[[T], int],
    *,
    limit: int | None,
    byte_budget: int,
) -> tuple[list[T], bool]:
    """Read rows in order until `limit` rows or `byte_budget` bytes (but at least one row);
    the bool says more rows follow."""
    page: list[T] = []
    size = 0
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(name="durable_page") as cur,
    ):
        await cur.execute(query, params)
        while batch := await cur.fetchmany(_FETCH_BATCH):
            for row in batch:
                item = convert(row)
                size += size_of(item)
                full = limit is not None and len(page) >= limit
                if page and (full or size > byte_budget):
                    return page, True
                page.append(item)
    return page, False
