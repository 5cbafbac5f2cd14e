"""Bulk actions: cancel or resume every workflow a filter matches, in bounded batches.

A batch behaves as CancelWorkflow / ResumeWorkflow called once for each of its workflows
(store/management.py: the same status guards, the same columns set, the same
notifications), in one short transaction that commits before the next batch is read:

- The action's statuses (cancel: ENQUEUED, then PENDING; resume: CANCELLED, then
  DEAD_LETTER) are walked one at a time, each in (created_at, workflow_id) order by a
  keyset over the index on (namespace, status, created_at), so a batch costs an index
  range of `batch_size` rows, never a rescan of what came before. ENQUEUED goes before
  PENDING so a workflow claimed while the walk runs is met again as PENDING.
- A batch reads up to `batch_size` matching workflows without locking them, then locks
  those still matching in workflow_id order (FOR UPDATE, waiting: two coordinators running
  overlapping bulk actions lock in one order and cannot deadlock) and changes them under
  the status guard. A workflow another coordinator (or a worker, or a single cancel)
  changed first no longer matches once its lock is granted: it counts as matched, not
  changed. So over any number of concurrent bulk actions each workflow is changed once,
  and none is passed over (SKIP LOCKED would pass over a row someone else holds for a
  moment, a worker's finish for instance, and miss it for good).
- Claims (store/queues.py _CLAIM) SKIP LOCKED: they pass over a workflow a batch holds.
- Resume: a workflow whose queue deduplication ID is held again by a live workflow (or by
  an earlier one of the same batch) is skipped, as ResumeWorkflow would refuse it
  (QUEUE_DEDUPLICATED): it stays CANCELLED / DEAD_LETTER and counts as matched, not
  changed. A start that takes the ID while the batch runs makes the batch fail on the
  unique index; it is then redone one workflow at a time, each in a savepoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.store.filters import WorkflowFilter
from coordinator.store.management import (
    CANCEL_SET,
    CANCELLABLE,
    NOTIFY_WORK,
    RESUMABLE,
    RESUME_SET,
    notify_status_on,
)
from coordinator.store.records import Status
from coordinator.store.workflows import DEDUP_INDEX

log = logging.getLogger(__name__)

BATCH_SIZE = 500


@dataclass(frozen=True)
class Progress:
    """Workflows matched so far (in a status the action applies to) and changed so far."""

    matched: int
    changed: int
    done: bool


@dataclass(frozen=True)
class Action:
    name: str
    statuses: tuple[Status, ...]
    set_clause: str


CANCEL = Action("cancel", CANCELLABLE, CANCEL_SET)
RESUME = Action("resume", RESUMABLE, RESUME_SET)

_COUNT = f"""
SELECT count(*) FROM durable.workflows w
 WHERE w.namespace = %(ns)s AND w.status = ANY(%(action_statuses)s::text[])
   AND {WorkflowFilter().where("w")}"""

# One batch's candidates, in keyset order. The `created_at >=` bound lets the index range
# start at the cursor (the row comparison alone would not).
_CANDIDATES = f"""
SELECT w.workflow_id, w.created_at FROM durable.workflows w
 WHERE w.namespace = %(ns)s AND w.status = %(status)s
   AND {WorkflowFilter().where("w")}
   AND (%(after_time)s::timestamptz IS NULL
        OR (w.created_at >= %(after_time)s
            AND (w.created_at, w.workflow_id) > (%(after_time)s, %(after_id)s)))
 ORDER BY w.created_at, w.workflow_id
 LIMIT %(limit)s"""

# Those candidates still matching, locked in workflow_id order (one order for every
# coordinator: no deadlock), then changed under the status guard.
_LOCKED = f"""
SELECT w.workflow_id FROM durable.workflows w
 WHERE w.namespace = %(ns)s AND w.workflow_id = ANY(%(ids)s::text[])
   AND w.status = ANY(%(action_statuses)s::text[])
   AND {WorkflowFilter().where("w")}
 ORDER BY w.workflow_id
   FOR UPDATE"""

_APPLY = """
UPDATE durable.workflows w SET {set_clause}
 WHERE w.namespace = %(ns)s AND w.workflow_id = ANY(%(ids)s::text[])
   AND w.status = ANY(%(action_statuses)s::text[])
RETURNING w.workflow_id, w.queue_name"""

# Resume: of the locked workflows, those whose queue deduplication ID no live workflow
# holds, and only the oldest of the batch per ID (ResumeWorkflow would refuse the rest).
_RESUMABLE = """
SELECT DISTINCT ON (w.queue_name, w.deduplication_id,
                    CASE WHEN w.deduplication_id IS NULL THEN w.workflow_id END)
       w.workflow_id
  FROM durable.workflows w
 WHERE w.namespace = %(ns)s AND w.workflow_id = ANY(%(ids)s::text[])
   AND (w.deduplication_id IS NULL
        OR NOT EXISTS (SELECT 1 FROM durable.workflows h
                        WHERE h.namespace = w.namespace AND h.queue_name = w.queue_name
                          AND h.deduplication_id = w.deduplication_id
                          AND h.status IN ('ENQUEUED', 'PENDING')))
 ORDER BY w.queue_name, w.deduplication_id,
          CASE WHEN w.deduplication_id IS NULL THEN w.workflow_id END,
          w.created_at, w.workflow_id"""


async def count(
    pool: AsyncConnectionPool, namespace: str, where: WorkflowFilter, action: Action
) -> int:
    """How many workflows the action would change now (a dry run).

    One count over the index on (namespace, status, created_at) restricted to the action's
    statuses (or a narrower index the filter allows: parent, schedule, app version,
    attributes): its cost grows with the namespace's workflows in those statuses that the
    filter's indexed fields do not exclude, not with the whole table."""
    async with pool.connection() as conn:
        cur = await conn.execute(_COUNT, _params(namespace, where, action))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _params(namespace: str, where: WorkflowFilter, action: Action) -> dict[str, Any]:
    return {
        "ns": namespace,
        **where.params(),
        "action_statuses": [s.value for s in action.statuses],
    }


def _walk(where: WorkflowFilter, action: Action) -> list[Status]:
    """The statuses to walk: the action's, narrowed by the filter's."""
    return [s for s in action.statuses if not where.statuses or s in where.statuses]


async def run(
    pool: AsyncConnectionPool,
    namespace: str,
    where: WorkflowFilter,
    action: Action,
    *,
    batch_size: int = BATCH_SIZE,
) -> AsyncIterator[Progress]:
    """Apply the action to every matching workflow, one committed batch at a time; yields
    the progress after each batch and a last one with `done`. Closing the iterator, or
    cancelling its task, stops it after the batch under way commits (committed batches
    stay)."""
    matched = changed = 0
    for status in _walk(where, action):
        after: tuple[datetime, str] | None = None
        while True:
            # Shielded: a cancelled call (the client went away) stops after this batch
            # commits, not in the middle of it.
            batch = asyncio.ensure_future(
                _batch(pool, namespace, where, action, status, after, batch_size)
            )
            found, applied, last = await asyncio.shield(batch)
            if not found:
                break
            matched += found
            changed += applied
            after = last
            yield Progress(matched, changed, done=False)
            if found < batch_size:
                break
    yield Progress(matched, changed, done=True)


async def _batch(
    pool: AsyncConnectionPool,
    namespace: str,
    where: WorkflowFilter,
    action: Action,
    status: Status,
    after: tuple[datetime, str] | None,
    batch_size: int,
) -> tuple[int, int, tuple[datetime, str]]:
    """One batch in its own transaction: (workflows matched, changed, keyset cursor)."""
    params = {
        **_params(namespace, where, action),
        "status": status.value,
        "after_time": after[0] if after else None,
        "after_id": after[1] if after else "",
        "limit": batch_size,
    }
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CANDIDATES, params)
        candidates = await cur.fetchall()
        if not candidates:
            return 0, 0, after or (datetime.min, "")
        params["ids"] = [workflow_id for workflow_id, _ in candidates]
        last_id, last_time = candidates[-1]
        try:
            async with conn.transaction():  # a savepoint
                changed = await _apply(conn, namespace, action, params)
        except psycopg.errors.UniqueViolation as exc:
            # A start took a freed deduplication ID while the batch ran.
            if exc.diag.constraint_name != DEDUP_INDEX:
                raise
            changed = await _apply_one_by_one(conn, namespace, action, params)
    return len(candidates), changed, (last_time, last_id)


async def _apply(
    conn: AsyncConnection[Any], namespace: str, action: Action, params: dict[str, Any]
) -> int:
    cur = await conn.execute(_LOCKED, params)
    ids = [workflow_id for (workflow_id,) in await cur.fetchall()]
    if ids and action is RESUME:
        cur = await conn.execute(_RESUMABLE, {**params, "ids": ids})
        resumable = {workflow_id for (workflow_id,) in await cur.fetchall()}
        skipped = [workflow_id for workflow_id in ids if workflow_id not in resumable]
        if skipped:
            log.info(
                "bulk resume in %s skips %d workflows whose queue deduplication ID is held"
                " again (e.g. %s)",
                namespace,
                len(skipped),
                skipped[0],
            )
        ids = [workflow_id for workflow_id in ids if workflow_id in resumable]
    if not ids:
        return 0
    cur = await conn.execute(_APPLY.format(set_clause=action.set_clause), {**params, "ids": ids})
    done = await cur.fetchall()
    await _notify(conn, namespace, action, done)
    return len(done)


async def _apply_one_by_one(
    conn: AsyncConnection[Any], namespace: str, action: Action, params: dict[str, Any]
) -> int:
    changed = 0
    for workflow_id in params["ids"]:
        try:
            async with conn.transaction():
                changed += await _apply(conn, namespace, action, {**params, "ids": [workflow_id]})
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != DEDUP_INDEX:
                raise
            log.info(
                "bulk resume in %s skips %s: its deduplication ID is held", namespace, workflow_id
            )
    return changed


async def _notify(
    conn: AsyncConnection[Any], namespace: str, action: Action, done: list[Any]
) -> None:
    """What CancelWorkflow / ResumeWorkflow notify, for the whole batch at once."""
    if not done:
        return
    params = {"ns": namespace}
    if action is CANCEL:
        await notify_status_on(conn, namespace, [workflow_id for workflow_id, _ in done])
        if any(queue is not None for _, queue in done):
            # Slots of their queues may be free now: wake the pollers.
            await conn.execute(NOTIFY_WORK, params)
    else:
        await conn.execute(NOTIFY_WORK, params)
