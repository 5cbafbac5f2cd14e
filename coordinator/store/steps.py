"""Step records: first writer wins per (workflow_id, step_id); history pages for replay."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import StepNameMismatch, WorkflowNotFound, WorkflowNotPending
from coordinator.store import rows
from coordinator.store.records import Outcome, StepKind, StepRecord

# Records only for a PENDING workflow; on conflict the row stays as first written.
# FOR SHARE holds the workflow row until commit: a concurrent FinishWorkflow waits for this
# step, or, if it committed first, the row is re-checked, no longer PENDING, and nothing is
# recorded. Without the lock a step could land after the workflow finished.
_RECORD = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data, error_type, error_message, error_details)
SELECT %(wf)s, %(ns)s, %(step)s, %(name)s, 'STEP',
       %(out_enc)s, %(out_data)s, %(err_type)s, %(err_msg)s, %(err_details)s
 WHERE EXISTS (SELECT 1 FROM durable.workflows
                WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status = 'PENDING'
                   FOR SHARE)
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING {rows.STEP_COLUMNS}"""

# Why a record was not inserted: the step exists, or the workflow is missing or finished.
_DIAGNOSE = f"""
SELECT w.status, {", ".join("s." + c.strip() for c in rows.STEP_COLUMNS.split(","))}
  FROM durable.workflows w
  LEFT JOIN durable.steps s
         ON s.workflow_id = w.workflow_id AND s.namespace = w.namespace AND s.step_id = %(step)s
 WHERE w.workflow_id = %(wf)s AND w.namespace = %(ns)s"""

# A page of steps bounded by count and by bytes. A row is included when the rows
# before it fit the budget, so a page always makes progress even past the budget.
_PAGE = f"""
SELECT {rows.STEP_COLUMNS}, last_step_id FROM (
    SELECT {rows.STEP_COLUMNS},
           max(step_id) OVER () AS last_step_id,
           sum(coalesce(octet_length(output_data), 0)
               + coalesce(octet_length(error_message), 0)
               + coalesce(octet_length(error_details), 0)
               + octet_length(name) + 64)
               OVER (ORDER BY step_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS bytes_before
      FROM durable.steps
     WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id > %(after)s
) page
 WHERE coalesce(bytes_before, 0) < %(budget)s
 ORDER BY step_id
 LIMIT %(limit)s"""


def _describe(kind: StepKind, name: str) -> str:
    return f"set_event {name!r}" if kind is StepKind.SET_EVENT else f"step {name!r}"


async def resolve_unrecorded(
    conn: AsyncConnection[Any],
    namespace: str,
    workflow_id: str,
    step_id: int,
    kind: StepKind,
    name: str,
) -> StepRecord:
    """After an insert that recorded nothing: return the step recorded first, or raise why.

    Raises WorkflowNotFound, WorkflowNotPending, or StepNameMismatch when the recorded step
    at this position is a different operation (the replay is not deterministic).
    """
    cur = await conn.execute(_DIAGNOSE, {"ns": namespace, "wf": workflow_id, "step": step_id})
    row = await cur.fetchone()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    status, step_row = row[0], row[1:]
    if step_row[0] is None:
        raise WorkflowNotPending(workflow_id, status)
    recorded = rows.step(step_row)
    if (recorded.kind, recorded.name) != (kind, name):
        raise StepNameMismatch(
            workflow_id, step_id, _describe(recorded.kind, recorded.name), _describe(kind, name)
        )
    return recorded


async def record(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    name: str,
    outcome: Outcome,
) -> tuple[StepRecord, bool]:
    """Record a step's outcome; the bool says another outcome was recorded first."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "step": step_id,
        "name": name,
        **rows.outcome_columns(outcome),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_RECORD, params)
        row = await cur.fetchone()
        if row is not None:
            return rows.step(row), False
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, StepKind.STEP, name
        )
        return recorded, True


async def page(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    after_step_id: int,
    limit: int,
    byte_budget: int,
) -> tuple[list[StepRecord], bool]:
    """Steps after `after_step_id` in order, at most `limit` and about `byte_budget` bytes.

    The bool says more steps follow.
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "after": after_step_id,
        "budget": byte_budget,
        "limit": limit,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_PAGE, params)
        found = await cur.fetchall()
    steps = [rows.step(row) for row in found]
    has_more = bool(found) and found[-1][0] < found[-1][-1]
    return steps, has_more
