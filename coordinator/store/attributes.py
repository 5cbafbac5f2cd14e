"""Search attributes set by a running workflow, checkpointed as its step (SET_ATTRIBUTES):
first writer wins, and a replay sets nothing again."""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows
from coordinator.store.records import StepKind, StepRecord
from coordinator.store.steps import resolve_unrecorded

# The name every SET_ATTRIBUTES step is recorded under (the SDK asks for it on a replay).
STEP_NAME = "attributes"

# One statement, one round trip. `wf` locks the workflow row (FOR UPDATE, the guard of
# steps.WRITABLE: PENDING and, when the caller names an executor, run by it) and merges the
# new attributes into its latest version: `||` replaces the keys given, then the keys with
# an empty value are removed. The step is recorded only if the merge keeps within the
# count limit, and only once (ON CONFLICT: a replay or a retried call records nothing);
# only a recorded step updates the workflow. With no row from `step`, the caller finds out
# why: over the limit (`over_limit`), or the step was recorded before, or the workflow is
# missing, finished or someone else's (steps.resolve_unrecorded). The row lock orders
# concurrent SetAttributes of one workflow (each merges into the other's result) and a
# finish, cancel or takeover against this write.
_SET = f"""
WITH wf AS (
    SELECT (attributes || %(set)s::jsonb) - %(removed)s::text[] AS merged
      FROM durable.workflows
     WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status = 'PENDING'
       AND (%(exec)s = '' OR executor_id = %(exec)s)
       FOR UPDATE
), checked AS (
    SELECT merged, (SELECT count(*) FROM jsonb_object_keys(merged)) > %(max)s AS over_limit
      FROM wf
), step AS (
    INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                               output_encoding, output_data)
    SELECT %(wf)s, %(ns)s, %(step)s, %(name)s, 'SET_ATTRIBUTES', 'json', 'null'
      FROM checked WHERE NOT over_limit
    ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
    RETURNING {rows.STEP_COLUMNS}
), updated AS (
    UPDATE durable.workflows w
       SET attributes = checked.merged, updated_at = clock_timestamp()
      FROM checked, step
     WHERE w.workflow_id = %(wf)s AND w.namespace = %(ns)s
 RETURNING w.attributes
)
SELECT {", ".join("step." + c.strip() for c in rows.STEP_COLUMNS.split(","))},
       updated.attributes, coalesce(checked.over_limit, false)
  FROM (SELECT 1) AS one
  LEFT JOIN checked ON true
  LEFT JOIN step ON true
  LEFT JOIN updated ON true"""

_CURRENT = """
SELECT attributes FROM durable.workflows WHERE workflow_id = %(wf)s AND namespace = %(ns)s"""

_STEP_EXISTS = """
SELECT 1 FROM durable.steps
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id = %(step)s"""


@dataclass(frozen=True)
class SetResult:
    """What a SetAttributes did: the step as recorded, whether it was recorded before (a
    replay: nothing was set), and the workflow's attributes after the call."""

    step: StepRecord
    already_recorded: bool
    attributes: dict[str, str]


class OverLimit(Exception):
    """The merge would leave the workflow with more than `max_count` attributes."""


async def set_attributes(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    attributes: dict[str, str],
    *,
    max_count: int,
    executor_id: str = "",
) -> SetResult:
    """Merge `attributes` into the workflow's (an empty value removes its key) as step
    `step_id`, in one transaction with the step's record.

    Raises OverLimit (nothing recorded) when the merge would leave more than `max_count`
    keys; WorkflowNotFound, NotOwner, WorkflowNotPending or StepNameMismatch as
    steps.resolve_unrecorded says. A step already recorded (a replay) changes nothing and
    comes back with the current attributes.
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "exec": executor_id,
        "step": step_id,
        "name": STEP_NAME,
        "set": json.dumps({k: v for k, v in attributes.items() if v}, sort_keys=True),
        "removed": [k for k, v in attributes.items() if not v],
        "max": max_count,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_SET, params)
        row = await cur.fetchone()
        assert row is not None
        if row[0] is not None:
            return SetResult(rows.step(row), False, dict(row[rows.STEP_WIDTH]))
        if row[rows.STEP_WIDTH + 1]:
            # Over the limit: refused, unless the step was recorded before (a replay,
            # answered below as any other).
            cur = await conn.execute(_STEP_EXISTS, params)
            if await cur.fetchone() is None:
                raise OverLimit(max_count)
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, StepKind.SET_ATTRIBUTES, STEP_NAME, executor_id
        )
        cur = await conn.execute(_CURRENT, params)
        current = await cur.fetchone()
    return SetResult(recorded, True, dict(current[0]) if current else {})
