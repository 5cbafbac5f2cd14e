"""Time a running workflow checkpoints: durable sleep, and the deadlines of its waits.

A wait made from a workflow (Recv, GetEvent with a caller) has its deadline fixed by the
first call, in durable.step_deadlines, so a workflow resumed after its worker died waits
only for what is left of it. When the wait ends, its outcome is recorded as the caller's
step (with the deadline) and the deadline row goes. Every time is the database's clock,
so coordinators with skewed clocks agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows
from coordinator.store.records import Payload, StepKind, StepRecord
from coordinator.store.steps import WRITABLE, resolve_unrecorded

SLEEP_STEP_NAME = "sleep"
JSON_NULL = Payload("json", b"null")

_STEP_EXISTS = """EXISTS (SELECT 1 FROM durable.steps
                WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id = %(step)s)"""

# The wake-up time is fixed by the first call; a replay changes nothing and reads it back.
_SLEEP = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data, deadline_at)
SELECT %(wf)s, %(ns)s, %(step)s, '{SLEEP_STEP_NAME}', 'SLEEP', 'json', 'null',
       clock_timestamp() + %(duration)s
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING {rows.STEP_COLUMNS}, clock_timestamp()"""

# First call fixes the deadline; later calls (a retry, or a resumed workflow) keep it. Not
# once the step is recorded: its deadline row is gone then and must not come back.
_FIX_DEADLINE = f"""
INSERT INTO durable.step_deadlines (workflow_id, namespace, step_id, deadline_at)
SELECT %(wf)s, %(ns)s, %(step)s, clock_timestamp() + %(timeout)s
 WHERE NOT {_STEP_EXISTS} AND {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING"""

# The deadline, if the caller may still record the step. A caller that may not (the step is
# recorded, the workflow finished or moved to another executor) is told why instead.
_DEADLINE = f"""
SELECT d.deadline_at, clock_timestamp(), {WRITABLE} AND NOT {_STEP_EXISTS}
  FROM (SELECT 1) AS one
  LEFT JOIN durable.step_deadlines d
         ON d.workflow_id = %(wf)s AND d.namespace = %(ns)s AND d.step_id = %(step)s"""

# A wait's outcome as the caller's step, under the same guard as every step.
_RECORD_WAIT = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data, deadline_at, timed_out)
SELECT %(wf)s, %(ns)s, %(step)s, %(name)s, %(kind)s,
       %(out_enc)s, %(out_data)s, %(deadline)s, %(timed_out)s
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING {rows.STEP_COLUMNS}"""

_DROP_DEADLINE = """
DELETE FROM durable.step_deadlines
 WHERE workflow_id = %(wf)s AND namespace = %(ns)s AND step_id = %(step)s"""

# Whether a waiting caller should stop waiting: its step got recorded (by a concurrent call
# for the same step), or it may no longer record it (cancelled, finished, taken over).
_SETTLED = f"SELECT {_STEP_EXISTS} OR NOT {WRITABLE}"


@dataclass(frozen=True)
class Deadline:
    """A wait in progress: when it ends, and the database's clock when this was read."""

    at: datetime
    now: datetime

    @property
    def remaining(self) -> float:
        """Seconds left, by the database's clock (never negative)."""
        return max(0.0, (self.at - self.now).total_seconds())


@dataclass(frozen=True)
class Slept:
    step: StepRecord
    already_recorded: bool
    # Seconds until the wake-up time, by the database's clock (0 once it passed).
    remaining: float


async def sleep(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    duration: float,
    *,
    executor_id: str = "",
) -> Slept:
    """Record a sleep of `duration` seconds as step `step_id` (first call only) and say how
    long is left of it. The caller does the sleeping."""
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "step": step_id,
        "exec": executor_id,
        "duration": timedelta(seconds=duration),
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_SLEEP, params)
        row = await cur.fetchone()
        if row is not None:
            step, now, already = rows.step(row), row[rows.STEP_WIDTH], False
        else:
            step = await resolve_unrecorded(
                conn, namespace, workflow_id, step_id, StepKind.SLEEP, SLEEP_STEP_NAME, executor_id
            )
            cur = await conn.execute("SELECT clock_timestamp()")
            found = await cur.fetchone()
            assert found is not None
            now, already = found[0], True
    assert step.deadline_at is not None, "a SLEEP step always has its wake-up time"
    return Slept(step, already, Deadline(step.deadline_at, now).remaining)


def _params(
    namespace: str, workflow_id: str, step_id: int, executor_id: str, **extra: Any
) -> dict[str, Any]:
    return {"ns": namespace, "wf": workflow_id, "step": step_id, "exec": executor_id, **extra}


async def begin(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    kind: StepKind,
    name: str,
    timeout: float,
    *,
    executor_id: str = "",
) -> StepRecord | Deadline:
    """Start (or go on with) a wait checkpointed as step `step_id` of a running workflow.

    Returns the recorded step when the wait already ended (a replay), else its deadline:
    `timeout` seconds from now on the first call, the one recorded then on later calls.
    Raises like any step write (WorkflowNotFound, WorkflowNotPending, NotOwner,
    StepNameMismatch).
    """
    params = _params(
        namespace, workflow_id, step_id, executor_id, timeout=timedelta(seconds=timeout)
    )
    async with pool.connection() as conn:
        await conn.execute(_FIX_DEADLINE, params)
        cur = await conn.execute(_DEADLINE, params)
        row = await cur.fetchone()
        assert row is not None  # one row, from (SELECT 1)
        deadline_at, now, open_ = row
        if open_ and deadline_at is not None:
            return Deadline(deadline_at, now)
        # Recorded already (returned if it is the same operation), or refused: say why.
        return await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, kind, name, executor_id
        )


async def record_outcome(
    conn: AsyncConnection[Any],
    namespace: str,
    workflow_id: str,
    step_id: int,
    kind: StepKind,
    name: str,
    outcome: Payload,
    deadline: datetime,
    *,
    timed_out: bool,
    executor_id: str = "",
) -> StepRecord | None:
    """Record how a wait ended as the caller's step, on `conn` (in the caller's
    transaction, if any), and drop its deadline row. None when nothing was recorded (the
    step exists, or the workflow may not record it): see `resolve_unrecorded`."""
    params = _params(
        namespace,
        workflow_id,
        step_id,
        executor_id,
        name=name,
        kind=kind.value,
        out_enc=outcome.encoding,
        out_data=outcome.data,
        deadline=deadline,
        timed_out=timed_out,
    )
    cur = await conn.execute(_RECORD_WAIT, params)
    row = await cur.fetchone()
    if row is None:
        return None
    await conn.execute(_DROP_DEADLINE, params)
    return rows.step(row)


async def record(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    kind: StepKind,
    name: str,
    outcome: Payload,
    deadline: datetime,
    *,
    timed_out: bool,
    executor_id: str = "",
) -> tuple[StepRecord, bool]:
    """Record how a wait ended; the bool says another outcome was recorded first (it is
    returned instead)."""
    async with pool.connection() as conn:
        async with conn.transaction():
            step = await record_outcome(
                conn,
                namespace,
                workflow_id,
                step_id,
                kind,
                name,
                outcome,
                deadline,
                timed_out=timed_out,
                executor_id=executor_id,
            )
        if step is not None:
            return step, False
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, kind, name, executor_id
        )
        return recorded, True


async def settled_on(
    conn: AsyncConnection[Any], namespace: str, workflow_id: str, step_id: int, executor_id: str
) -> bool:
    """Whether a waiting caller should stop: its step is recorded, or it may not record it."""
    cur = await conn.execute(_SETTLED, _params(namespace, workflow_id, step_id, executor_id))
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def settled(
    pool: AsyncConnectionPool, namespace: str, workflow_id: str, step_id: int, executor_id: str
) -> bool:
    """`settled_on` a connection of the pool."""
    async with pool.connection() as conn:
        return await settled_on(conn, namespace, workflow_id, step_id, executor_id)
