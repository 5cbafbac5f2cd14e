"""Events: set (checkpointed as a step, last write wins, with history) and read."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows
from coordinator.store.records import (
    EventSnapshot,
    EventValue,
    Payload,
    Status,
    StepKind,
    StepRecord,
)
from coordinator.store.steps import WRITABLE, resolve_unrecorded

EVENT_CHANNEL = "durable_event"

# A set event's NOTIFY names it and its new version, and carries the value too when it is
# small (at most NOTIFY_VALUE_BYTES, base64, and the note within Postgres' limit of 8,000
# bytes): readers on every coordinator then take it from the note instead of reading it
# back (notify.Listener). Larger values are read from the table.
NOTIFY_VALUE_BYTES = 2048
_NOTE_MAX_BYTES = 7900


def notify(ns: str, wf: str, key: str, version: str, enc: str, data: str, set_at: str) -> str:
    """The pg_notify(...) expression for one set event, given the SQL of its columns."""
    names = f"'n', {ns}, 'w', {wf}, 'k', {key}, 'v', {version}"
    full = f"""CASE WHEN octet_length({data}) <= {NOTIFY_VALUE_BYTES} THEN json_build_object(
        {names}, 'e', {enc}, 'd', encode({data}, 'base64'),
        't', to_char({set_at} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'))::text END"""
    return f"""pg_notify('{EVENT_CHANNEL}', (
        SELECT CASE WHEN octet_length(note.full) <= {_NOTE_MAX_BYTES} THEN note.full
                    ELSE json_build_object({names})::text END
          FROM (SELECT {full} AS full) AS note))"""


_NOTIFY_SET = notify(
    "%(ns)s::text",
    "%(wf)s::text",
    "%(key)s::text",
    "latest.version",
    "latest.encoding",
    "latest.data",
    "latest.set_at",
)

# One statement, one commit: record the step (only for a PENDING workflow and only once),
# then upsert the latest value, append history, and NOTIFY (delivered at commit). If the
# step was already recorded, `step` is empty and nothing else happens.
# WRITABLE (see steps.py) keeps a value from being set after the workflow finished, which a
# follower that got `workflow_finished` would never see.
_SET = f"""
WITH step AS (
    INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                               output_encoding, output_data)
    SELECT %(wf)s, %(ns)s, %(step)s, %(key)s, 'SET_EVENT', 'json', 'null'
     WHERE {WRITABLE}
    ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
    RETURNING {rows.STEP_COLUMNS}
), latest AS (
    INSERT INTO durable.events (workflow_id, namespace, key, version, encoding, data, set_at)
    SELECT %(wf)s, %(ns)s, %(key)s, 1, %(enc)s, %(data)s, step.recorded_at FROM step
    ON CONFLICT (workflow_id, namespace, key) DO UPDATE
       SET version = durable.events.version + 1,
           encoding = EXCLUDED.encoding, data = EXCLUDED.data, set_at = EXCLUDED.set_at
    RETURNING version, encoding, data, set_at
), history AS (
    INSERT INTO durable.event_history (workflow_id, namespace, key, version, step_id,
                                       encoding, data, set_at)
    SELECT %(wf)s, %(ns)s, %(key)s, version, %(step)s, encoding, data, set_at FROM latest
)
SELECT {rows.STEP_COLUMNS}, latest.version, {_NOTIFY_SET}
  FROM step, latest"""

_SNAPSHOT_COLUMNS = "w.status, e.version, e.encoding, e.data, e.set_at"

# The latest value only (a plain wait, or the first message of a follow).
_LATEST = f"""
SELECT {_SNAPSHOT_COLUMNS}
  FROM (SELECT 1) AS one
  LEFT JOIN durable.workflows w ON w.workflow_id = %(wf)s AND w.namespace = %(ns)s
  LEFT JOIN durable.events e
         ON e.workflow_id = %(wf)s AND e.namespace = %(ns)s AND e.key = %(key)s
        AND e.version > %(after)s"""

# Every value after a version, oldest first (a follow that must not skip any).
_HISTORY = f"""
SELECT {_SNAPSHOT_COLUMNS}
  FROM (SELECT 1) AS one
  LEFT JOIN durable.workflows w ON w.workflow_id = %(wf)s AND w.namespace = %(ns)s
  LEFT JOIN LATERAL (
        SELECT version, encoding, data, set_at FROM durable.event_history
         WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND key = %(key)s
           AND version > %(after)s
         ORDER BY version
         LIMIT %(limit)s) e ON true
 ORDER BY e.version"""


async def set_event(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    key: str,
    value: Payload,
    *,
    executor_id: str = "",
) -> tuple[StepRecord, int | None]:
    """Publish `key` = `value` as step `step_id`.

    Returns the step record and the new version, or None as version when the step was
    already recorded (a replay: nothing was set).
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": executor_id,
        "step": step_id,
        "key": key,
        "enc": value.encoding,
        "data": value.data,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_SET, params)
        row = await cur.fetchone()
        if row is not None:
            return rows.step(row), row[rows.STEP_WIDTH]
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, StepKind.SET_EVENT, key, executor_id
        )
        return recorded, None


async def read(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    key: str,
    after_version: int,
    *,
    from_history: bool,
    limit: int = 100,
) -> EventSnapshot:
    """Values of `key` newer than `after_version`, with the workflow's status, in one snapshot.

    Without `from_history` only the latest value comes back; with it, every value after
    `after_version` in order, at most `limit`.
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "key": key,
        "after": after_version,
        "limit": limit + 1,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_HISTORY if from_history else _LATEST, params)
        found = await cur.fetchall()
    status = Status(found[0][0]) if found and found[0][0] is not None else None
    values = [
        EventValue(version, Payload(encoding, bytes(data)), set_at)
        for _, version, encoding, data, set_at in found
        if version is not None
    ]
    return EventSnapshot(status, values[:limit], has_more=len(values) > limit)
