"""Workflow rows: idempotent start, finish (first writer wins), read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, pq
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import (
    QueueDeduplicated,
    WorkflowNameMismatch,
    WorkflowNotFound,
)
from coordinator.store import rows
from coordinator.store.records import Outcome, Payload, Status, WorkflowRecord
from coordinator.store.steps import fence
from coordinator.store.workers import WORK_CHANNEL

WORKFLOW_CHANNEL = "durable_workflow"

# A workflow with a queue_name is created ENQUEUED: a worker serving the queue claims it
# (coordinator/store/queues.py), and the NOTIFY (sent at commit) wakes the pollers of every
# coordinator. So is a delayed or debounced one, due at `due_at` (a past start_at means
# now): no worker claims it before (store/workers.py, queues.py), and pollers bound their
# wait by the earliest due time (`next_due`), so nothing needs to wake them then. Its
# timeout counts from when it is due. Without either it is PENDING at once, run by its
# starter. One statement, so a start outside a transaction is one round trip.
_INSERT = f"""
WITH due AS (
    SELECT CASE WHEN %(delay)s::interval IS NOT NULL
                THEN clock_timestamp() + %(delay)s::interval
                WHEN %(start_at)s::timestamptz IS NOT NULL
                THEN greatest(%(start_at)s::timestamptz, clock_timestamp())
           END AS at
), created AS (
    INSERT INTO durable.workflows (workflow_id, namespace, name, status, input_encoding,
                                   input_data, executor_id, deadline_at, queue_name, priority,
                                   deduplication_id, parent_workflow_id, app_version,
                                   partition_key, due_at, debounce_key, attributes)
    SELECT %(wf)s, %(ns)s, %(name)s,
           CASE WHEN %(queue)s::text IS NULL AND due.at IS NULL
                THEN 'PENDING' ELSE 'ENQUEUED' END,
           %(in_enc)s, %(in_data)s, NULLIF(%(exec)s, ''),
           coalesce(due.at, clock_timestamp()) + %(timeout)s::interval,
           %(queue)s, %(priority)s, %(dedup)s, %(parent)s, NULLIF(%(version)s, ''),
           %(partition)s, due.at, %(debounce_key)s, %(attributes)s::jsonb
      FROM due
    ON CONFLICT (workflow_id, namespace) DO NOTHING
    RETURNING {rows.WORKFLOW_COLUMNS}
)
SELECT created.*,
       CASE WHEN created.status = 'ENQUEUED'
            THEN pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text) END
  FROM created"""

# A debounced start while a workflow of its (name, debounce key) waits ENQUEUED (due or not,
# but not claimed yet: a claim makes it PENDING under the same row lock): that workflow
# takes the new input and is due `debounce` from now; its deadline moves with it. The row
# lock orders it against claims and other starts of the burst. Pollers sleep until the
# earliest due time they read, so when the due time moves earlier (a shorter debounce
# than the previous start's) they are woken to read it again; later needs no wake-up.
_DEBOUNCE = f"""
WITH waiting AS (
    SELECT workflow_id, due_at FROM durable.workflows
     WHERE namespace = %(ns)s AND name = %(name)s AND debounce_key = %(debounce_key)s
       AND status = 'ENQUEUED'
       FOR UPDATE
), merged AS (
    UPDATE durable.workflows w
       SET input_encoding = %(in_enc)s, input_data = %(in_data)s,
           due_at = clock_timestamp() + %(debounce)s::interval,
           deadline_at = w.deadline_at
                         + (clock_timestamp() + %(debounce)s::interval - waiting.due_at),
           updated_at = clock_timestamp()
      FROM waiting
     WHERE w.workflow_id = waiting.workflow_id AND w.namespace = %(ns)s
       AND w.status = 'ENQUEUED'
 RETURNING {", ".join("w." + c.strip() for c in rows.WORKFLOW_COLUMNS.split(","))},
           waiting.due_at AS was_due
)
SELECT {rows.WORKFLOW_COLUMNS},
       CASE WHEN due_at < was_due
            THEN pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text) END
  FROM merged"""

DEBOUNCE_INDEX = "workflows_debounce_idx"

# A worker starting a workflow that exists and is not finished takes it over: it resumes
# it, and any other executor still running it gets NOT_OWNER at its next write. A queued
# workflow still ENQUEUED is left to its queue: taking it would bypass the queue's limits;
# so is a delayed one not due yet: it starts when due, through a worker's claim.
_TAKE_OVER = f"""
UPDATE durable.workflows
   SET executor_id = %(exec)s, status = 'PENDING', updated_at = clock_timestamp()
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND name = %(name)s
   AND (status = 'PENDING'
        OR (status = 'ENQUEUED' AND queue_name IS NULL
            AND (due_at IS NULL OR due_at <= clock_timestamp())))
RETURNING {rows.WORKFLOW_COLUMNS}"""

# A parent replaying its start of a child takes the child over only when no live session
# runs it: a child that another worker recovered is left to that worker (the parent awaits
# it) rather than taken back, which would stop that worker's run half-way.
_TAKE_OVER_UNOWNED = f"""
UPDATE durable.workflows w
   SET executor_id = %(exec)s, status = 'PENDING', updated_at = clock_timestamp()
 WHERE w.workflow_id = %(wf)s AND w.namespace = %(ns)s AND w.name = %(name)s
   AND (w.status = 'PENDING'
        OR (w.status = 'ENQUEUED' AND w.queue_name IS NULL
            AND (w.due_at IS NULL OR w.due_at <= clock_timestamp())))
   AND (w.executor_id IS NULL OR w.executor_id = %(exec)s
        OR NOT EXISTS (SELECT 1 FROM durable.workers k
                        WHERE k.executor_id = w.executor_id AND k.namespace = w.namespace
                          AND k.lease_expires_at > clock_timestamp()))
RETURNING {rows.WORKFLOW_COLUMNS}"""

# The live holder of a queue's deduplication ID (see workflows_queue_dedup_idx).
_DEDUP_HOLDER = """
SELECT workflow_id FROM durable.workflows
 WHERE namespace = %(ns)s AND queue_name = %(queue)s AND deduplication_id = %(dedup)s
   AND status IN ('ENQUEUED', 'PENDING')"""

DEDUP_INDEX = "workflows_queue_dedup_idx"
_DEDUP_ROUNDS = 5


async def dedup_holder(
    conn: AsyncConnection[Any], namespace: str, queue_name: str, deduplication_id: str
) -> str | None:
    """The live workflow of the queue holding this deduplication ID, if any."""
    params = {"ns": namespace, "queue": queue_name, "dedup": deduplication_id}
    cur = await conn.execute(_DEDUP_HOLDER, params)
    row = await cur.fetchone()
    return None if row is None else str(row[0])


_SELECT = f"""
SELECT {rows.WORKFLOW_COLUMNS}
  FROM durable.workflows WHERE workflow_id = %(wf)s AND namespace = %(ns)s"""

# The NOTIFY is sent at commit, so a woken reader always finds the new status.
_FINISH = f"""
WITH finished AS (
    UPDATE durable.workflows
       SET status = %(status)s,
           output_encoding = %(out_enc)s, output_data = %(out_data)s,
           error_type = %(err_type)s, error_message = %(err_msg)s,
           error_details = %(err_details)s,
           updated_at = clock_timestamp()
     WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status = 'PENDING'
       AND (%(exec)s = '' OR executor_id = %(exec)s)
 RETURNING {rows.WORKFLOW_COLUMNS}
)
SELECT finished.*,
       pg_notify('{WORKFLOW_CHANNEL}',
                 json_build_object('n', %(ns)s::text, 'w', %(wf)s::text)::text),
       -- A queued workflow's end frees a slot of its queue: wake the pollers.
       CASE WHEN finished.queue_name IS NOT NULL
            THEN pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text) END
  FROM finished"""


@dataclass(frozen=True)
class StartOptions:
    """How a new workflow is started (an existing one keeps what it was started with)."""

    # The worker session that runs it ('' for none); it takes over an existing one.
    executor_id: str = ""
    timeout: timedelta | None = None
    # Enqueue it on this queue instead (created ENQUEUED).
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    parent_workflow_id: str | None = None
    # The application version of the code that runs it ('' for none).
    app_version: str = ""
    # With queue_name: the queue's partition.
    partition_key: str | None = None
    # A delayed start: created ENQUEUED, due this long from now or at this time.
    delay: timedelta | None = None
    start_at: datetime | None = None
    # A debounced start (see StartWorkflowRequest.debounce_key).
    debounce_key: str | None = None
    debounce: timedelta | None = None
    # Its search attributes (validated: attributes.validate). A debounced start that merges
    # into its burst's waiting workflow leaves that one's attributes as they are.
    attributes: dict[str, str] = field(default_factory=dict)


async def start(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    name: str,
    input: Payload | None,
    options: StartOptions = StartOptions(),
) -> tuple[WorkflowRecord, bool]:
    """Create the workflow, or return the existing one; the bool says whether it was created.

    With an `executor_id`, an existing unfinished workflow is taken over by that executor.
    A debounced start (`debounce_key`) whose workflow ID is new, while a workflow of the
    same name and key waits ENQUEUED, returns that one (not created) with the new input,
    due `debounce` from now; once that one has been claimed, the next start creates anew.
    Raises QueueDeduplicated when its queue holds a live workflow with its deduplication ID.
    """
    async with pool.connection() as conn:
        return await start_on(conn, namespace, workflow_id, name, input, options)


async def start_on(
    conn: AsyncConnection[Any],
    namespace: str,
    workflow_id: str,
    name: str,
    input: Payload | None,
    options: StartOptions,
    *,
    take_over_unowned_only: bool = False,
) -> tuple[WorkflowRecord, bool]:
    """`start` on a connection, which may be inside a transaction (a child's start).

    `take_over_unowned_only`: take an existing workflow over only if no live session runs it.
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": options.executor_id,
        "timeout": options.timeout,
        "name": name,
        "in_enc": input.encoding if input else None,
        "in_data": input.data if input else None,
        "queue": options.queue_name,
        "priority": options.priority,
        "dedup": options.deduplication_id,
        "parent": options.parent_workflow_id,
        "version": options.app_version,
        "partition": options.partition_key,
        "delay": options.delay,
        "start_at": options.start_at,
        "debounce_key": options.debounce_key,
        "debounce": options.debounce,
        "attributes": json.dumps(options.attributes, sort_keys=True),
    }
    # The holder of a deduplication ID may finish between the failed insert and the look
    # for it; then the insert is tried again (a holder finishing every time is not real).
    # So may the waiting workflow of a debounce key be claimed between the failed insert
    # and the merge into it: then the insert is tried again, and this start begins a new
    # burst.
    for _ in range(_DEDUP_ROUNDS):
        try:
            row = await _alone(conn, _INSERT, params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == DEBOUNCE_INDEX:
                assert options.debounce_key is not None and options.debounce is not None
                merged = await _alone(conn, _DEBOUNCE, params)
                if merged is None:
                    continue  # claimed meanwhile: a new burst
                return rows.workflow(merged), False
            if exc.diag.constraint_name != DEDUP_INDEX:
                raise
            assert options.queue_name is not None and options.deduplication_id is not None
            holder = await dedup_holder(
                conn, namespace, options.queue_name, options.deduplication_id
            )
            if holder is None:
                continue  # the holder ended meanwhile: try again
            raise QueueDeduplicated(options.queue_name, options.deduplication_id, holder) from None
        if row is not None:
            return rows.workflow(row), True
        break
    else:
        raise QueueDeduplicated(options.queue_name or "", options.deduplication_id or "", "")
    # The row exists (or existed when we inserted): this read sees it, committed.
    if options.executor_id:
        take_over = _TAKE_OVER_UNOWNED if take_over_unowned_only else _TAKE_OVER
        cur = await conn.execute(take_over, params)
        row = await cur.fetchone()
        if row is not None:
            return rows.workflow(row), False
    cur = await conn.execute(_SELECT, params)
    row = await cur.fetchone()
    if row is None:
        # Deleted between the two statements; nothing deletes workflows today.
        raise WorkflowNotFound(workflow_id)
    existing = rows.workflow(row)
    if existing.name != name:
        raise WorkflowNameMismatch(workflow_id, existing.name, name)
    return existing, False


async def _alone(conn: AsyncConnection[Any], query: str, params: dict[str, Any]) -> rows.Row | None:
    """The first row of one statement in its own transaction: autocommitted on an idle
    connection, else in a savepoint of the caller's, so that a refused write rolls back
    alone."""
    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        cur = await conn.execute(query, params)
        return await cur.fetchone()
    async with conn.transaction():
        cur = await conn.execute(query, params)
        return await cur.fetchone()


async def get(pool: AsyncConnectionPool, namespace: str, workflow_id: str) -> WorkflowRecord:
    """The workflow as recorded; WorkflowNotFound if it does not exist."""
    async with pool.connection() as conn:
        cur = await conn.execute(_SELECT, {"ns": namespace, "wf": workflow_id})
        row = await cur.fetchone()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    return rows.workflow(row)


def finish_status(result: Outcome) -> Status:
    """The status a workflow finishes with: SUCCESS with an output, ERROR with an error."""
    return Status.SUCCESS if isinstance(result, Payload) else Status.ERROR


async def finish(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    result: Outcome,
    *,
    executor_id: str = "",
) -> tuple[WorkflowRecord, bool]:
    """Record the result of a PENDING workflow; the bool says it was no longer PENDING
    (finished, cancelled...). Raises NotOwner if the caller names an executor and the
    workflow's executor is another (or none) now, whatever its status (steps.fence): a run
    whose workflow another executor took over and finished learns it here."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": executor_id,
        "status": finish_status(result).value,
        **rows.outcome_columns(result),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_FINISH, params)
        row = await cur.fetchone()
    if row is not None:
        return rows.workflow(row), False
    current = await get(pool, namespace, workflow_id)
    fence(workflow_id, current.executor_id, executor_id)
    return current, True
