"""Workflow rows: idempotent start, finish (first writer wins), read."""

from __future__ import annotations

from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from coordinator.errors import NotOwner, WorkflowNameMismatch, WorkflowNotFound
from coordinator.store import rows
from coordinator.store.records import Outcome, Payload, Status, WorkflowRecord

WORKFLOW_CHANNEL = "durable_workflow"

_INSERT = f"""
INSERT INTO durable.workflows (workflow_id, namespace, name, status, input_encoding, input_data,
                               executor_id, deadline_at)
VALUES (%(wf)s, %(ns)s, %(name)s, 'PENDING', %(in_enc)s, %(in_data)s,
        NULLIF(%(exec)s, ''), clock_timestamp() + %(timeout)s)
ON CONFLICT (workflow_id, namespace) DO NOTHING
RETURNING {rows.WORKFLOW_COLUMNS}"""

# A worker starting a workflow that exists and is not finished takes it over: it resumes
# it, and any other executor still running it gets NOT_OWNER at its next write.
_TAKE_OVER = f"""
UPDATE durable.workflows
   SET executor_id = %(exec)s, status = 'PENDING', updated_at = clock_timestamp()
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND name = %(name)s
   AND status IN ('PENDING', 'ENQUEUED')
RETURNING {rows.WORKFLOW_COLUMNS}"""

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
                 json_build_object('n', %(ns)s::text, 'w', %(wf)s::text)::text)
  FROM finished"""


async def start(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    name: str,
    input: Payload | None,
    *,
    executor_id: str = "",
    timeout: timedelta | None = None,
) -> tuple[WorkflowRecord, bool]:
    """Create the workflow, or return the existing one; the bool says whether it was created.

    With an `executor_id`, an existing unfinished workflow is taken over by that executor.
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": executor_id,
        "timeout": timeout,
        "name": name,
        "in_enc": input.encoding if input else None,
        "in_data": input.data if input else None,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_INSERT, params)
        row = await cur.fetchone()
        if row is not None:
            return rows.workflow(row), True
        # The row exists (or existed when we inserted): this read sees it, committed.
        if executor_id:
            cur = await conn.execute(_TAKE_OVER, params)
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


async def get(pool: AsyncConnectionPool, namespace: str, workflow_id: str) -> WorkflowRecord:
    """The workflow as recorded; WorkflowNotFound if it does not exist."""
    async with pool.connection() as conn:
        cur = await conn.execute(_SELECT, {"ns": namespace, "wf": workflow_id})
        row = await cur.fetchone()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    return rows.workflow(row)


async def finish(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    result: Outcome,
    *,
    executor_id: str = "",
) -> tuple[WorkflowRecord, bool]:
    """Record the result of a PENDING workflow; the bool says it was no longer PENDING
    (finished, cancelled...). Raises NotOwner if another executor runs it now."""
    status = Status.SUCCESS if isinstance(result, Payload) else Status.ERROR
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": executor_id,
        "status": status.value,
        **rows.outcome_columns(result),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_FINISH, params)
        row = await cur.fetchone()
    if row is not None:
        return rows.workflow(row), False
    current = await get(pool, namespace, workflow_id)
    if current.status is Status.PENDING and executor_id and current.executor_id != executor_id:
        raise NotOwner(workflow_id)
    return current, True
