"""Step records: first writer wins per (workflow_id, step_id); history pages for replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import (
    NotOwner,
    StepNameMismatch,
    WorkflowNotFound,
    WorkflowNotPending,
)
from coordinator.store import rows
from coordinator.store.records import Failure, Outcome, StepAttempt, StepKind, StepRecord

# The guard of every write a running workflow makes: it is PENDING and, when the caller
# names its executor (a worker), still runs under that executor. A write it stops is
# explained afterwards (resolve_unrecorded, under the fencing rule of `fence`). FOR SHARE
# holds the workflow row until commit: a concurrent finish, cancel or takeover waits for
# this write, or, if it committed first, the row is re-checked and nothing is written.
# Without the lock a step could land after the workflow finished.
WRITABLE = """EXISTS (SELECT 1 FROM durable.workflows
                WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND status = 'PENDING'
                  AND (%(exec)s = '' OR executor_id = %(exec)s)
                  FOR SHARE)"""

# On conflict the row stays as first written.
_RECORD = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data, error_type, error_message, error_details,
                           started_at, attempts)
SELECT %(wf)s, %(ns)s, %(step)s, %(name)s, %(kind)s,
       %(out_enc)s, %(out_data)s, %(err_type)s, %(err_msg)s, %(err_details)s,
       %(started_at)s, %(attempts)s
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING {rows.STEP_COLUMNS}"""

_RECORD_ATTEMPT = f"""
INSERT INTO durable.step_attempts (workflow_id, namespace, step_id, attempt, name,
                                   error_type, error_message, error_details, started_at, ended_at)
SELECT %(wf)s, %(ns)s, %(step)s, %(attempt)s, %(name)s,
       %(err_type)s, %(err_msg)s, %(err_details)s, %(started_at)s,
       coalesce(%(ended_at)s, clock_timestamp())
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id, attempt) DO NOTHING
RETURNING attempt"""

_FAILED_ATTEMPTS = """
SELECT step_id, attempt, error_type, error_message, error_details, started_at, ended_at
  FROM durable.step_attempts
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id = ANY(%(steps)s)
 ORDER BY step_id, attempt"""

# Steps with failed attempts recorded and no outcome yet, with their last attempt number.
_UNFINISHED_ATTEMPTS = """
SELECT a.step_id, max(a.attempt)
  FROM durable.step_attempts a
 WHERE a.workflow_id = %(wf)s AND a.namespace = %(ns)s
   AND NOT EXISTS (SELECT 1 FROM durable.steps s
                    WHERE s.workflow_id = a.workflow_id AND s.namespace = a.namespace
                      AND s.step_id = a.step_id)
 GROUP BY a.step_id
 ORDER BY a.step_id"""

# Why a write did nothing: the step exists, or the workflow is missing, finished, or run by
# another executor.
_DIAGNOSE = f"""
SELECT w.status, w.executor_id,
       {", ".join("s." + c.strip() for c in rows.STEP_COLUMNS.split(","))}
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


def fence(workflow_id: str, owner: str | None, executor_id: str) -> None:
    """Raise NotOwner when a worker writes to a workflow that another executor (or none)
    runs now: the one fencing rule of every write a running workflow makes.

    It holds whatever the workflow's status and whether or not the step is recorded: a
    run whose workflow was taken over (and perhaps finished) by another executor, or
    resumed to wait for one (ENQUEUED, no executor), must stop at its next write, and a
    replay of a step the new owner recorded would otherwise let it run on and repeat that
    owner's steps. A caller that names no executor (not a worker) is never fenced.
    """
    if executor_id and owner != executor_id:
        raise NotOwner(workflow_id)


def _describe(kind: StepKind, name: str) -> str:
    return f"{kind.value.lower()} {name!r}"


async def resolve_unrecorded(
    conn: AsyncConnection[Any],
    namespace: str,
    workflow_id: str,
    step_id: int,
    kind: StepKind,
    name: str,
    executor_id: str,
) -> StepRecord:
    """After a write that recorded nothing: return the step recorded first, or raise why.

    A step already recorded comes back to the workflow's executor (a replay) and to a
    caller naming none; an executor that lost the workflow gets NotOwner for it too, in
    this same round trip (see `fence`). Raises WorkflowNotFound, NotOwner,
    WorkflowNotPending, or StepNameMismatch when the recorded step at this position is a
    different operation (the replay is not deterministic).
    """
    cur = await conn.execute(_DIAGNOSE, {"ns": namespace, "wf": workflow_id, "step": step_id})
    row = await cur.fetchone()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    status, owner, step_row = row[0], row[1], row[2:]
    fence(workflow_id, owner, executor_id)
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
    *,
    executor_id: str = "",
    started_at: datetime | None = None,
    attempts: int = 1,
    kind: StepKind = StepKind.STEP,
) -> tuple[StepRecord, bool]:
    """Record a step's outcome (a STEP, or a PATCH marker); the bool says another outcome
    was recorded first."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "step": step_id,
        "name": name,
        "kind": kind.value,
        "exec": executor_id,
        "started_at": started_at,
        "attempts": attempts,
        **rows.outcome_columns(outcome),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_RECORD, params)
        row = await cur.fetchone()
        if row is not None:
            return rows.step(row), False
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, kind, name, executor_id
        )
        return recorded, True


async def unfinished_attempts(
    pool: AsyncConnectionPool, namespace: str, workflow_id: str
) -> list[tuple[int, int]]:
    """(step_id, last failed attempt) of the steps that failed attempts and have no
    outcome yet: a run resuming the workflow numbers its next attempts after them."""
    async with pool.connection() as conn:
        cur = await conn.execute(_UNFINISHED_ATTEMPTS, {"ns": namespace, "wf": workflow_id})
        return [(int(step_id), int(attempt)) for step_id, attempt in await cur.fetchall()]


async def record_attempt(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    name: str,
    attempt: int,
    error: Failure,
    *,
    executor_id: str = "",
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> None:
    """Record a failed attempt of a step that will be retried (once per attempt: a
    repeat, e.g. a retry after a lost reply, changes nothing). Raises WorkflowNotFound,
    NotOwner (see `fence`) or WorkflowNotPending."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "step": step_id,
        "name": name,
        "attempt": attempt,
        "exec": executor_id,
        "started_at": started_at,
        "ended_at": ended_at,
        **rows.outcome_columns(error),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_RECORD_ATTEMPT, params)
        if await cur.fetchone() is not None:
            return
        # Not written: a duplicate of this attempt (fine), or why not.
        cur = await conn.execute(
            "SELECT status, executor_id FROM durable.workflows"
            " WHERE workflow_id = %(wf)s AND namespace = %(ns)s",
            params,
        )
        row = await cur.fetchone()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    status, owner = row
    fence(workflow_id, owner, executor_id)
    if status != "PENDING":
        raise WorkflowNotPending(workflow_id, status)


async def page(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    after_step_id: int,
    limit: int,
    byte_budget: int,
    *,
    with_failed_attempts: bool = False,
) -> tuple[list[StepRecord], bool]:
    """Steps after `after_step_id` in order, at most `limit` and about `byte_budget` bytes.

    The bool says more steps follow. With `with_failed_attempts`, each step carries the
    failed attempts that preceded its outcome.
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
        if with_failed_attempts and any(step.attempts > 1 for step in steps):
            retried = [step.step_id for step in steps if step.attempts > 1]
            cur = await conn.execute(_FAILED_ATTEMPTS, {**params, "steps": retried})
            failed: dict[int, list[StepAttempt]] = {}
            for step_id, attempt, e_type, e_msg, e_det, started, ended in await cur.fetchall():
                failed.setdefault(step_id, []).append(
                    StepAttempt(attempt, Failure(e_type, e_msg, e_det), started, ended)
                )
            steps = [
                replace(step, failed_attempts=tuple(failed.get(step.step_id, ()))) for step in steps
            ]
    has_more = bool(found) and found[-1][0] < found[-1][-1]
    return steps, has_more
