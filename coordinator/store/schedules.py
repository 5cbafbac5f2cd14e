"""Schedule rows, and starting their ticks' workflows exactly once.

Every coordinator runs the tick loop (coordinator/schedules/ticker.py) over all schedules.
A schedule's due ticks are started in one transaction that holds its row (FOR UPDATE SKIP
LOCKED: coordinators never wait on each other, and one that dies mid-way rolls back and
leaves the ticks to the next). The tick's workflow ID, name@tick, makes a second start of
a tick (a race, a retry after a lost commit) find the workflow already there.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import CoordinatorError, InvalidArgument
from coordinator.schedules.cron import CatchUp, Cron, CronError, due_ticks, tick_workflow_id
from coordinator.store import rows
from coordinator.store.records import Payload, WorkflowRecord
from coordinator.store.workers import WORK_CHANNEL

log = logging.getLogger(__name__)


class ScheduleNotFound(CoordinatorError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "SCHEDULE_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} does not exist", schedule=name)


@dataclass(frozen=True)
class ScheduleSpec:
    """What a schedule starts, and when (validated)."""

    name: str
    cron: Cron
    workflow_name: str
    input: Payload | None = None
    queue_name: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    catch_up: CatchUp = CatchUp.SKIP


@dataclass(frozen=True)
class ScheduleRecord:
    spec: ScheduleSpec
    paused: bool
    created_at: datetime
    updated_at: datetime
    ticked_until: datetime
    next_tick_at: datetime | None
    last_tick_at: datetime | None
    last_workflow_id: str | None


_COLUMNS = """name, cron, time_zone, workflow_name, input_encoding, input_data, queue_name,
    start_at, end_at, catch_up, paused, created_at, updated_at, ticked_until, next_tick_at,
    last_tick_at, last_workflow_id"""


def _record(row: rows.Row) -> ScheduleRecord:
    (name, cron, zone, workflow_name, in_enc, in_data, queue, start_at, end_at, catch_up) = row[:10]
    paused, created_at, updated_at, ticked_until, next_tick_at, last_tick_at, last_wf = row[10:]
    spec = ScheduleSpec(
        name=name,
        # Validated when it was stored.
        cron=Cron.parse(cron, zone),
        workflow_name=workflow_name,
        input=Payload(in_enc, bytes(in_data)) if in_enc is not None else None,
        queue_name=queue,
        start_at=start_at,
        end_at=end_at,
        catch_up=CatchUp(catch_up),
    )
    return ScheduleRecord(
        spec, paused, created_at, updated_at, ticked_until, next_tick_at, last_tick_at, last_wf
    )


# An update keeps the paused state and the ticks done; ticks from now on follow the new
# spec. The caller holds the row (if any) and never moves `ticked_until` back, so an
# update starts no tick twice.
_SET = f"""
INSERT INTO durable.schedules AS s (name, namespace, cron, time_zone, workflow_name,
                                    input_encoding, input_data, queue_name, start_at, end_at,
                                    catch_up, ticked_until, next_tick_at)
VALUES (%(name)s, %(ns)s, %(cron)s, %(zone)s, %(workflow)s, %(in_enc)s, %(in_data)s,
        %(queue)s, %(start)s, %(end)s, %(catch_up)s, %(ticked_until)s, %(next)s)
ON CONFLICT (name, namespace) DO UPDATE
   SET cron = EXCLUDED.cron, time_zone = EXCLUDED.time_zone,
       workflow_name = EXCLUDED.workflow_name, input_encoding = EXCLUDED.input_encoding,
       input_data = EXCLUDED.input_data, queue_name = EXCLUDED.queue_name,
       start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at, catch_up = EXCLUDED.catch_up,
       ticked_until = EXCLUDED.ticked_until, next_tick_at = EXCLUDED.next_tick_at,
       updated_at = clock_timestamp()
RETURNING {_COLUMNS}, (xmax = 0)"""

_GET = f"SELECT {_COLUMNS} FROM durable.schedules WHERE name = %(name)s AND namespace = %(ns)s"

_LIST = f"""
SELECT {_COLUMNS} FROM durable.schedules
 WHERE namespace = %(ns)s AND name > %(after)s
   AND (%(workflow)s = '' OR workflow_name = %(workflow)s)
 ORDER BY name
 LIMIT %(limit)s"""

_PAUSE = f"""
UPDATE durable.schedules SET paused = true, updated_at = clock_timestamp()
 WHERE name = %(name)s AND namespace = %(ns)s
RETURNING {_COLUMNS}"""

# Ticks missed while paused are not started: the schedule goes on from now.
_RESUME = f"""
UPDATE durable.schedules
   SET paused = false, ticked_until = greatest(ticked_until, %(now)s),
       next_tick_at = %(next)s, updated_at = clock_timestamp()
 WHERE name = %(name)s AND namespace = %(ns)s AND paused
RETURNING {_COLUMNS}"""

_DELETE = "DELETE FROM durable.schedules WHERE name = %(name)s AND namespace = %(ns)s"

_NOW = "SELECT clock_timestamp()"

# The schedules due now, across namespaces, each locked for this transaction; those
# another coordinator is starting are passed over.
_DUE = f"""
SELECT namespace, {_COLUMNS} FROM durable.schedules
 WHERE NOT paused AND next_tick_at <= clock_timestamp()
 ORDER BY next_tick_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED"""

_STOP = """
UPDATE durable.schedules SET next_tick_at = NULL
 WHERE name = %(name)s AND namespace = %(ns)s"""

_NEXT_DUE = """
SELECT min(next_tick_at) FROM durable.schedules WHERE NOT paused AND next_tick_at IS NOT NULL"""

_ADVANCE = """
UPDATE durable.schedules
   SET ticked_until = %(ticked_until)s, next_tick_at = %(next)s,
       last_tick_at = coalesce(%(last_tick)s, last_tick_at),
       last_workflow_id = coalesce(%(last_wf)s, last_workflow_id)
 WHERE name = %(name)s AND namespace = %(ns)s"""

# A tick's workflow: ENQUEUED (on the schedule's queue, if any) for a worker of its name.
_START_TICK = f"""
INSERT INTO durable.workflows (workflow_id, namespace, name, status, input_encoding,
                               input_data, queue_name, schedule_name, scheduled_at)
VALUES (%(wf)s, %(ns)s, %(workflow)s, 'ENQUEUED', %(in_enc)s, %(in_data)s, %(queue)s,
        %(name)s, %(tick)s)
ON CONFLICT (workflow_id, namespace) DO NOTHING
RETURNING {rows.WORKFLOW_COLUMNS}"""

_WORKFLOW = f"""
SELECT {rows.WORKFLOW_COLUMNS} FROM durable.workflows
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s"""

_NOTIFY_WORK = f"SELECT pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text)"

# Live workers that would run the schedule's workflows (serving its queue, if any).
_WORKERS = """
SELECT count(*) FROM durable.workers
 WHERE namespace = %(ns)s AND lease_expires_at > clock_timestamp()
   AND %(workflow)s = ANY (workflow_names)
   AND (%(queue)s::text IS NULL OR %(queue)s = ANY (queues))"""


def _spec_params(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron.expression,
        "zone": spec.cron.zone.key,
        "workflow": spec.workflow_name,
        "in_enc": spec.input.encoding if spec.input else None,
        "in_data": spec.input.data if spec.input else None,
        "queue": spec.queue_name,
        "start": spec.start_at,
        "end": spec.end_at,
        "catch_up": spec.catch_up.value,
    }


async def _now(conn: AsyncConnection[Any]) -> datetime:
    """The database's clock: every coordinator reads ticks against the same one."""
    cur = await conn.execute(_NOW)
    row = await cur.fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def _starting_point(spec: ScheduleSpec, now: datetime) -> datetime:
    """Ticks after this are the schedule's: from now, or from its start time."""
    if spec.start_at is not None and spec.start_at > now:
        return spec.start_at - timedelta(microseconds=1)
    return now


async def set_schedule(
    pool: AsyncConnectionPool, namespace: str, spec: ScheduleSpec
) -> tuple[ScheduleRecord, bool]:
    """Create or update a schedule; the bool says it was created."""
    async with pool.connection() as conn, conn.transaction():
        now = await _now(conn)
        ticked_until = _starting_point(spec, now)
        # Held until commit: the tick loop cannot start this schedule's ticks meanwhile.
        cur = await conn.execute(_GET + " FOR UPDATE", {"ns": namespace, "name": spec.name})
        existing = await cur.fetchone()
        if existing is not None:
            # The ticks it has done are kept; a start time still to come (ticked_until
            # ahead of now) is not a tick done and gives way to the new spec's.
            ticked_until = max(ticked_until, min(_record(existing).ticked_until, now))
        params = {
            **_spec_params(spec),
            "ns": namespace,
            "ticked_until": ticked_until,
            "next": spec.cron.next_tick(ticked_until, spec.end_at),
        }
        cur = await conn.execute(_SET, params)
        row = await cur.fetchone()
    assert row is not None
    return _record(row[:-1]), bool(row[-1])


async def get(pool: AsyncConnectionPool, namespace: str, name: str) -> ScheduleRecord:
    async with pool.connection() as conn:
        cur = await conn.execute(_GET, {"ns": namespace, "name": name})
        row = await cur.fetchone()
    if row is None:
        raise ScheduleNotFound(name)
    return _record(row)


async def live_workers(pool: AsyncConnectionPool, namespace: str, spec: ScheduleSpec) -> int:
    """How many live workers would run the schedule's workflows."""
    params = {"ns": namespace, "workflow": spec.workflow_name, "queue": spec.queue_name}
    async with pool.connection() as conn:
        cur = await conn.execute(_WORKERS, params)
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _page_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _after(token: str) -> str:
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "not a token from a previous page") from exc
    if "\x00" in after:
        raise InvalidArgument("page_token", "not a token from a previous page")
    return after


async def list_schedules(
    pool: AsyncConnectionPool, namespace: str, *, limit: int, page_token: str, workflow_name: str
) -> tuple[list[ScheduleRecord], str]:
    """A page of schedules by name, and the next page's token ('' at the end)."""
    params = {
        "ns": namespace,
        "after": _after(page_token) if page_token else "",
        "workflow": workflow_name,
        "limit": limit + 1,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_LIST, params)
        found = [_record(row) for row in await cur.fetchall()]
    more = len(found) > limit
    found = found[:limit]
    return found, _page_token(found[-1].spec.name) if more else ""


async def pause(pool: AsyncConnectionPool, namespace: str, name: str) -> ScheduleRecord:
    async with pool.connection() as conn:
        cur = await conn.execute(_PAUSE, {"ns": namespace, "name": name})
        row = await cur.fetchone()
    if row is None:
        raise ScheduleNotFound(name)
    return _record(row)


async def resume(pool: AsyncConnectionPool, namespace: str, name: str) -> ScheduleRecord:
    """Resume a paused schedule from now on (a running one is returned unchanged)."""
    current = await get(pool, namespace, name)
    if not current.paused:
        return current
    spec = current.spec
    async with pool.connection() as conn:
        start = _starting_point(spec, max(await _now(conn), current.ticked_until))
        params = {
            "ns": namespace,
            "name": name,
            "now": start,
            "next": spec.cron.next_tick(start, spec.end_at),
        }
        cur = await conn.execute(_RESUME, params)
        row = await cur.fetchone()
    return _record(row) if row is not None else await get(pool, namespace, name)


async def delete(pool: AsyncConnectionPool, namespace: str, name: str) -> bool:
    """Delete a schedule; its workflows are left alone. False when there was none."""
    async with pool.connection() as conn:
        cur = await conn.execute(_DELETE, {"ns": namespace, "name": name})
        return cur.rowcount > 0


async def _start_tick(
    conn: AsyncConnection[Any],
    namespace: str,
    spec: ScheduleSpec,
    workflow_id: str,
    tick: datetime,
) -> WorkflowRecord | None:
    """Start the tick's workflow; None when it exists already (started before)."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "name": spec.name,
        "workflow": spec.workflow_name,
        "in_enc": spec.input.encoding if spec.input else None,
        "in_data": spec.input.data if spec.input else None,
        "queue": spec.queue_name,
        "tick": tick,
    }
    cur = await conn.execute(_START_TICK, params)
    row = await cur.fetchone()
    return rows.workflow(row) if row is not None else None


async def trigger(
    pool: AsyncConnectionPool, namespace: str, name: str, workflow_id: str
) -> WorkflowRecord:
    """Start the schedule's workflow now, as `workflow_id`, with now as its tick; a retry
    (the ID exists, started by this schedule) returns the workflow started first."""
    current = await get(pool, namespace, name)
    async with pool.connection() as conn, conn.transaction():
        started = await _start_tick(conn, namespace, current.spec, workflow_id, await _now(conn))
        if started is None:
            cur = await conn.execute(_WORKFLOW, {"ns": namespace, "wf": workflow_id})
            row = await cur.fetchone()
            existing = rows.workflow(row) if row is not None else None
            if existing is None or existing.schedule_name != name:
                raise InvalidArgument("workflow_id", "already names another workflow")
            return existing
        await conn.execute(_NOTIFY_WORK, {"ns": namespace})
    return started


@dataclass(frozen=True)
class TickRun:
    """What one pass over the due schedules did."""

    started: int
    schedules: int


async def start_due(pool: AsyncConnectionPool, limit: int = 50) -> TickRun:
    """Start the workflows of every due tick of up to `limit` due schedules, and move each
    schedule on to its next tick, all in one transaction."""
    started = 0
    async with pool.connection() as conn, conn.transaction():
        now = await _now(conn)
        cur = await conn.execute(_DUE, {"limit": limit})
        found = await cur.fetchall()
        due = []
        for row in found:
            try:
                due.append((row[0], _record(row[1:])))
            except CronError as exc:
                # Stored valid, unreadable now (e.g. a cron library upgrade): it must not
                # stop the others. It stops ticking until it is set again.
                log.error("schedule %r cannot be read (%s): it is stopped", row[1], exc)
                await conn.execute(_STOP, {"ns": row[0], "name": row[1]})
        for namespace, record in due:
            spec = record.spec
            ticks = due_ticks(spec.cron, record.ticked_until, now, spec.catch_up, end=spec.end_at)
            last: tuple[datetime, str] | None = None
            for tick in ticks:
                workflow_id = tick_workflow_id(spec.name, tick)
                if await _start_tick(conn, namespace, spec, workflow_id, tick) is not None:
                    started += 1
                last = (tick, workflow_id)
            if ticks:
                await conn.execute(_NOTIFY_WORK, {"ns": namespace})
            params = {
                "ns": namespace,
                "name": spec.name,
                "ticked_until": now,
                "next": spec.cron.next_tick(now, spec.end_at),
                "last_tick": last[0] if last else None,
                "last_wf": last[1] if last else None,
            }
            await conn.execute(_ADVANCE, params)
    return TickRun(started, len(found))


async def database_now(pool: AsyncConnectionPool) -> datetime:
    """The database's clock, which schedules' ticks are read against."""
    async with pool.connection() as conn:
        return await _now(conn)


async def next_due(pool: AsyncConnectionPool) -> tuple[datetime, datetime | None]:
    """The database's time now, and the earliest next tick of any running schedule."""
    async with pool.connection() as conn:
        now = await _now(conn)
        cur = await conn.execute(_NEXT_DUE)
        row = await cur.fetchone()
    return now, row[0] if row else None
