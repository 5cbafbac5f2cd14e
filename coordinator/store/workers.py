"""Worker leases and claiming work: recovery of workflows whose worker died."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from coordinator.errors import LeaseExpired
from coordinator.store import rows
from coordinator.store.records import Status, WorkflowRecord

WORK_CHANNEL = "durable_work"

# A new session announcing a worker name ends the older sessions' leases with that name, so
# their workflows are recoverable at once (and claimed by this session first).
_END_OLDER_SESSIONS = f"""
WITH ended AS (
    UPDATE durable.workers SET lease_expires_at = clock_timestamp()
     WHERE namespace = %(ns)s AND worker_name = %(worker)s AND executor_id <> %(exec)s
       AND lease_expires_at > clock_timestamp()
 RETURNING executor_id
)
SELECT count(*), pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text)
  FROM ended HAVING count(*) > 0"""

_RENEW = """
INSERT INTO durable.workers (executor_id, namespace, worker_name, workflow_names, queues,
                             lease_expires_at, app_version)
VALUES (%(exec)s, %(ns)s, NULLIF(%(worker)s, ''), %(names)s, %(queues)s,
        clock_timestamp() + %(lease)s, NULLIF(%(version)s, ''))
ON CONFLICT (executor_id, namespace) DO UPDATE
   SET worker_name = EXCLUDED.worker_name, workflow_names = EXCLUDED.workflow_names,
       queues = EXCLUDED.queues, lease_expires_at = EXCLUDED.lease_expires_at,
       app_version = EXCLUDED.app_version
RETURNING lease_expires_at"""

# Claim runnable workflows this executor can run: ENQUEUED ones, and PENDING ones whose
# executor holds no live lease. SKIP LOCKED lets many workers claim at once without waiting
# on each other. The "no live lease" test is a correlated NOT EXISTS, not a join: when a row
# was claimed by a transaction that committed while this one ran, Postgres re-checks the
# conditions against the row's new version, and only expressions over the row itself (not
# columns of an already-joined row) are re-evaluated. The UPDATE repeats the test for the
# same reason. A workflow recovered more often than allowed goes to DEAD_LETTER instead.
# Only workflows of the worker's application version, or of none (which take it), are
# claimed: a worker never replays a history recorded by other code.
# ENQUEUED workflows of a queue are not taken here: they are claimed within their queue's
# limits, by workers serving it (queues.py).
_RUNNABLE_BY_OTHERS = """((w.status = 'ENQUEUED' AND w.queue_name IS NULL
         AND (w.due_at IS NULL OR w.due_at <= clock_timestamp()))
        OR (w.status = 'PENDING' AND w.executor_id IS NOT NULL AND w.executor_id <> %(exec)s
            AND NOT EXISTS (SELECT 1 FROM durable.workers k
                             WHERE k.executor_id = w.executor_id AND k.namespace = w.namespace
                               AND k.lease_expires_at > clock_timestamp())))"""

_CLAIM = f"""
WITH me AS (
    SELECT worker_name, workflow_names, app_version FROM durable.workers
     WHERE executor_id = %(exec)s AND namespace = %(ns)s
       AND lease_expires_at > clock_timestamp()
), candidates AS (
    SELECT w.workflow_id, w.status AS was, w.recovery_attempts
      FROM durable.workflows w
     WHERE w.namespace = %(ns)s
       AND w.status IN ('PENDING', 'ENQUEUED')
       AND w.name = ANY ((SELECT workflow_names FROM me)::text[])
       AND (w.app_version IS NULL OR w.app_version = (SELECT app_version FROM me))
       AND {_RUNNABLE_BY_OTHERS}
     ORDER BY EXISTS (SELECT 1 FROM durable.workers k
                       WHERE k.executor_id = w.executor_id AND k.namespace = w.namespace
                         AND k.worker_name = (SELECT worker_name FROM me)) DESC,
              w.created_at
     LIMIT %(limit)s
       FOR UPDATE OF w SKIP LOCKED
)
UPDATE durable.workflows w
   SET status = CASE WHEN c.was = 'PENDING' AND c.recovery_attempts >= %(max_recoveries)s
                     THEN 'DEAD_LETTER' ELSE 'PENDING' END,
       executor_id = CASE WHEN c.was = 'PENDING' AND c.recovery_attempts >= %(max_recoveries)s
                          THEN w.executor_id ELSE %(exec)s END,
       recovery_attempts = w.recovery_attempts + CASE WHEN c.was = 'PENDING' THEN 1 ELSE 0 END,
       app_version = coalesce(w.app_version, NULLIF(%(version)s, '')),
       updated_at = clock_timestamp()
  FROM candidates c
 WHERE w.workflow_id = c.workflow_id AND w.namespace = %(ns)s AND {_RUNNABLE_BY_OTHERS}
RETURNING {", ".join("w." + c.strip() for c in rows.WORKFLOW_COLUMNS.split(","))}"""

# The lease check before a claim also reads, in the same round trip, how long until the
# namespace's next delayed workflow falls due (one probe of workflows_due_idx): a poller
# that claims nothing sleeps no longer than that, since no NOTIFY marks a due time. Read
# before the claim, so a workflow falling due in between is either claimed or counted here.
# Namespace-wide, as the NOTIFY of an enqueue is: a due workflow this worker cannot run
# costs it one empty claim.
_HAS_LEASE = """
SELECT coalesce(app_version, ''),
       (SELECT extract(epoch FROM min(w.due_at) - clock_timestamp())::float8
          FROM durable.workflows w
         WHERE w.namespace = %(ns)s AND w.status = 'ENQUEUED'
           AND w.due_at > clock_timestamp())
  FROM durable.workers
 WHERE executor_id = %(exec)s AND namespace = %(ns)s AND lease_expires_at > clock_timestamp()"""

# Sessions whose lease lapsed long ago and that run nothing are only clutter.
_PRUNE = """
DELETE FROM durable.workers k
 WHERE k.lease_expires_at < clock_timestamp() - interval '1 hour'
   AND NOT EXISTS (SELECT 1 FROM durable.workflows w
                    WHERE w.executor_id = k.executor_id AND w.namespace = k.namespace
                      AND w.status = 'PENDING')"""


async def heartbeat(
    pool: AsyncConnectionPool,
    namespace: str,
    executor_id: str,
    worker_name: str,
    workflow_names: list[str],
    lease: timedelta,
    queues: list[str] | None = None,
    app_version: str = "",
) -> tuple[datetime, bool]:
    """Register or renew a lease; returns its expiry and whether older sessions of the same
    worker name were ended (their work is now claimable)."""
    params = {
        "ns": namespace,
        "exec": executor_id,
        "worker": worker_name,
        "names": workflow_names,
        "queues": queues or [],
        "lease": lease,
        "version": app_version,
    }
    async with pool.connection() as conn, conn.transaction():
        ended = False
        if worker_name:
            cur = await conn.execute(_END_OLDER_SESSIONS, params)
            ended = await cur.fetchone() is not None
        cur = await conn.execute(_RENEW, params)
        row = await cur.fetchone()
    assert row is not None
    expires: datetime = row[0]
    return expires, ended


@dataclass(frozen=True)
class Claimed:
    """What a claim took: workflows to run and workflows dead-lettered on the way, and in
    how many seconds the next delayed workflow of the namespace falls due (None: none)."""

    claimed: list[WorkflowRecord]
    dead: list[WorkflowRecord]
    next_due: float | None


async def claim(
    pool: AsyncConnectionPool, namespace: str, executor_id: str, limit: int, max_recoveries: int
) -> Claimed:
    """Claim up to `limit` workflows for this executor. Raises LeaseExpired without a live
    lease."""
    params = {
        "ns": namespace,
        "exec": executor_id,
        "limit": limit,
        "max_recoveries": max_recoveries,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_HAS_LEASE, params)
        live = await cur.fetchone()
        if live is None:
            raise LeaseExpired(executor_id)
        cur = await conn.execute(_CLAIM, {**params, "version": live[0]})
        found = [rows.workflow(row) for row in await cur.fetchall()]
    claimed = [w for w in found if w.status is Status.PENDING]
    dead = [w for w in found if w.status is Status.DEAD_LETTER]
    return Claimed(claimed, dead, live[1])


async def prune(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(_PRUNE)
