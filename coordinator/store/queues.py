"""Queues: their limits, and claiming their ENQUEUED workflows for a worker within them.

A worker serves the queues it named in its last Heartbeat. Each queue is claimed from in
its own short transaction holding a transaction-scoped advisory lock on (namespace, queue):
claimers of one queue take turns, so the counts a claim is sized by (running workflows,
recent claims) cannot change under it, and no limit is overshot however many workers poll
at once. The lock needs no row, so it also covers queues that were never configured.
Claimers of different queues do not wait on each other.

A queue's workflows may carry a partition key (e.g. a tenant; workflows without one form
one partition of their own). A claim is fair across partitions: it takes every partition's
first waiting workflow before any partition's second (see _CLAIM), so a partition with a
long backlog cannot starve the others. With `limits_per_partition`, `concurrency` and
`rate_limit` are measured per partition, and a claim takes from each partition only within
that partition's own room; `worker_concurrency` always applies per worker session.

A paused queue (PauseQueue, durable.queues.paused) is passed over by every claim: _READY
leaves it out and _USAGE, read under the queue's lock, says so (a pause that commits while
a claim of the queue is under way waits for the lock, see `set_paused`). Its PENDING
workflows run on; ResumeQueue clears the flag and wakes the pollers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows
from coordinator.store.records import WorkflowRecord
from coordinator.store.workers import WORK_CHANNEL

_NOTIFY_WORK = f"SELECT pg_notify('{WORK_CHANNEL}', json_build_object('n', %(ns)s::text)::text)"


@dataclass(frozen=True)
class QueueConfig:
    """A queue's limits; None means no limit."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    # Set exactly when rate_limit is.
    rate_period: timedelta | None = None
    # concurrency and rate_limit apply to each partition instead of the whole queue.
    limits_per_partition: bool = False
    # Set by PauseQueue, cleared by ResumeQueue; ConfigureQueue keeps it.
    paused: bool = False


# The first key of every queue's advisory lock: the two-int4 lock space is shared with
# nothing else in the coordinator (the migration lock uses the one-bigint space).
_LOCK_CLASS = 0x64757271  # "durq"

_CONFIGURE = """
INSERT INTO durable.queues (namespace, name, concurrency, worker_concurrency, rate_limit,
                            rate_period, limits_per_partition)
VALUES (%(ns)s, %(queue)s, %(concurrency)s, %(worker_concurrency)s, %(rate_limit)s,
        %(rate_period)s, %(per_partition)s)
ON CONFLICT (namespace, name) DO UPDATE
   SET concurrency = EXCLUDED.concurrency, worker_concurrency = EXCLUDED.worker_concurrency,
       rate_limit = EXCLUDED.rate_limit, rate_period = EXCLUDED.rate_period,
       limits_per_partition = EXCLUDED.limits_per_partition,
       updated_at = clock_timestamp()
RETURNING name, concurrency, worker_concurrency, rate_limit, rate_period, limits_per_partition,
          paused"""

# The worker's live session and, of the queues it serves, those with a workflow it could
# run waiting (one index probe per queue), but not the paused ones.
_READY = """
SELECT q.name, k.workflow_names, coalesce(k.app_version, '')
  FROM durable.workers k
 CROSS JOIN LATERAL unnest(k.queues) AS q(name)
 WHERE k.executor_id = %(exec)s AND k.namespace = %(ns)s
   AND k.lease_expires_at > clock_timestamp()
   AND NOT EXISTS (SELECT 1 FROM durable.queues p
                    WHERE p.namespace = k.namespace AND p.name = q.name AND p.paused)
   AND EXISTS (SELECT 1 FROM durable.workflows w
                WHERE w.namespace = k.namespace AND w.queue_name = q.name
                  AND w.status = 'ENQUEUED' AND w.name = ANY (k.workflow_names)
                  AND (w.app_version IS NULL OR w.app_version = k.app_version)
                  AND (w.due_at IS NULL OR w.due_at <= clock_timestamp()))"""

# Also, for the rest of the claim's transaction, plan with generic plans: _CLAIM is long
# enough that planning it anew for each claim (a custom plan) costs about as much as
# running it, and its plan does not depend on the values of its parameters.
_LOCK = """
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(ns)s || '/' || %(queue)s)),
       set_config('plan_cache_mode', 'force_generic_plan', true)"""

# Under the lock: the queue's limits and what the whole-queue ones are measured against
# (a count is only made for a limit that applies to the whole queue).
_USAGE = """
SELECT q.concurrency, q.worker_concurrency, q.rate_limit, q.rate_period,
       coalesce(q.limits_per_partition, false), coalesce(q.paused, false),
       CASE WHEN q.concurrency IS NOT NULL AND NOT q.limits_per_partition THEN
           (SELECT count(*) FROM durable.workflows w
             WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s AND w.status = 'PENDING')
       END,
       CASE WHEN q.worker_concurrency IS NOT NULL THEN
           (SELECT count(*) FROM durable.workflows w
             WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s AND w.status = 'PENDING'
               AND w.executor_id = %(exec)s)
       END,
       CASE WHEN q.rate_period IS NOT NULL AND NOT q.limits_per_partition THEN
           (SELECT count(*) FROM durable.workflows w
             WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s
               AND w.dequeued_at > clock_timestamp() - q.rate_period)
       END
  FROM (SELECT 1) AS one
  LEFT JOIN durable.queues q ON q.namespace = %(ns)s AND q.name = %(queue)s"""

# What a worker may run of a queue's ENQUEUED workflows (w), the condition shared by every
# part of a claim.
_ELIGIBLE = """
       w.namespace = %(ns)s AND w.queue_name = %(queue)s AND w.status = 'ENQUEUED'
   AND w.name = ANY (%(names)s::text[])
   AND (w.app_version IS NULL OR w.app_version = %(version)s)
   AND (w.due_at IS NULL OR w.due_at <= clock_timestamp())"""

# Fair across partitions (workflows without a partition key are partition ''): a round
# robin. Every partition's first workflow (lowest priority value, then oldest) comes before
# any partition's second, and so on; within one turn, the partition served longest ago
# (its latest claim, dequeued_at) comes first, a partition never served before all, then
# lowest priority value, then oldest. So over successive claims (even of one workflow
# each) every partition with work gets one turn per round, however long another's backlog
# is; priority orders the workflows of a partition, not one partition before another.
#
# heads walks the partitions (a loose index scan): each step is one index descent to the
# first workflow a worker may take now of the next partition, so a claim costs in
# partitions with work, not in waiting workflows. rooms adds what each partition may
# take: the claim's size, within the partition's own concurrency and rate limit when they
# apply per partition (%(concurrency)s and %(rate_limit)s are NULL otherwise; each count
# stops at its limit), and when it was last served; ready_heads keeps those with room. A
# partition's k-th turn can only be reached when fewer than %(take)s workflows come
# before it, and every other ready head does, so each partition is read at most
# take - heads + 1 deep, and not past its head once there are as many heads as the claim
# takes. SKIP LOCKED passes over a row a cancel holds (the claim is one short for it).
# The chosen workflows are then locked and updated by primary key (a join from the array
# of their IDs, whatever the planner's statistics say), and come back in claim order.
_CLAIM = f"""
WITH RECURSIVE heads(key, workflow_id, priority, created_at) AS (
    (SELECT coalesce(w.partition_key, ''), w.workflow_id, w.priority, w.created_at
       FROM durable.workflows w
      WHERE {_ELIGIBLE}
      ORDER BY coalesce(w.partition_key, ''), w.priority, w.created_at, w.workflow_id
      LIMIT 1)
    UNION ALL
    SELECT n.key, n.workflow_id, n.priority, n.created_at
      FROM heads h
     CROSS JOIN LATERAL (
           SELECT coalesce(w.partition_key, '') AS key, w.workflow_id, w.priority,
                  w.created_at
             FROM durable.workflows w
            WHERE {_ELIGIBLE} AND coalesce(w.partition_key, '') > h.key
            ORDER BY coalesce(w.partition_key, ''), w.priority, w.created_at, w.workflow_id
            LIMIT 1) n
),
rooms AS (
    SELECT h.key, h.workflow_id, h.priority, h.created_at,
           least(%(take)s,
                 %(concurrency)s::int - (
                     SELECT count(*) FROM (
                         SELECT 1 FROM durable.workflows w
                          WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s
                            AND w.status = 'PENDING' AND coalesce(w.partition_key, '') = h.key
                          LIMIT coalesce(%(concurrency)s::int, 0)) AS running),
                 %(rate_limit)s::int - (
                     SELECT count(*) FROM (
                         SELECT 1 FROM durable.workflows w
                          WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s
                            AND coalesce(w.partition_key, '') = h.key
                            AND w.dequeued_at > clock_timestamp() - %(rate_period)s::interval
                          LIMIT coalesce(%(rate_limit)s::int, 0)) AS recent)) AS room,
           (SELECT w.dequeued_at FROM durable.workflows w
             WHERE w.namespace = %(ns)s AND w.queue_name = %(queue)s
               AND coalesce(w.partition_key, '') = h.key AND w.dequeued_at IS NOT NULL
             ORDER BY w.dequeued_at DESC LIMIT 1) AS served
      FROM heads h
),
ready_heads AS (
    SELECT * FROM rooms WHERE room > 0
),
deeper AS (
    SELECT c.workflow_id, c.priority, c.created_at, h.served,
           1 + row_number() OVER (PARTITION BY h.key
                                  ORDER BY c.priority, c.created_at, c.workflow_id) AS turn
      FROM ready_heads h
     CROSS JOIN (SELECT %(take)s - count(*) + 1 AS deepest FROM ready_heads) n
     CROSS JOIN LATERAL (
           SELECT w.workflow_id, w.priority, w.created_at FROM durable.workflows w
            WHERE {_ELIGIBLE} AND coalesce(w.partition_key, '') = h.key
              AND (w.priority, w.created_at, w.workflow_id)
                  > (h.priority, h.created_at, h.workflow_id)
            ORDER BY w.priority, w.created_at, w.workflow_id
            LIMIT least(h.room, n.deepest) - 1) c
     WHERE least(h.room, n.deepest) > 1
),
chosen AS (
    SELECT array_agg(workflow_id ORDER BY turn, served NULLS FIRST, priority, created_at,
                                          workflow_id) AS ids
      FROM (SELECT workflow_id, turn, served, priority, created_at
              FROM (SELECT workflow_id, 1 AS turn, served, priority, created_at FROM ready_heads
                    UNION ALL
                    SELECT workflow_id, turn, served, priority, created_at FROM deeper) ranked
             ORDER BY turn, served NULLS FIRST, priority, created_at, workflow_id
             LIMIT %(take)s) taken
),
candidates AS (
    SELECT w.workflow_id
      FROM unnest((SELECT ids FROM chosen)) AS c(workflow_id)
      JOIN durable.workflows w ON w.workflow_id = c.workflow_id AND w.namespace = %(ns)s
     WHERE w.status = 'ENQUEUED'
       FOR UPDATE OF w SKIP LOCKED
),
claimed AS (
    UPDATE durable.workflows w
       SET status = 'PENDING', executor_id = %(exec)s, dequeued_at = clock_timestamp(),
           app_version = coalesce(w.app_version, NULLIF(%(version)s, '')),
           updated_at = clock_timestamp()
      FROM candidates c
     WHERE w.workflow_id = c.workflow_id AND w.namespace = %(ns)s AND w.status = 'ENQUEUED'
    RETURNING {", ".join("w." + c.strip() for c in rows.WORKFLOW_COLUMNS.split(","))}
)
SELECT {rows.WORKFLOW_COLUMNS} FROM claimed
 ORDER BY array_position((SELECT ids FROM chosen), workflow_id)"""


def _config(row: rows.Row) -> QueueConfig:
    name, concurrency, worker_concurrency, rate_limit, rate_period, per_partition, paused = row
    return QueueConfig(
        name, concurrency, worker_concurrency, rate_limit, rate_period, per_partition, paused
    )


async def configure(pool: AsyncConnectionPool, namespace: str, config: QueueConfig) -> QueueConfig:
    """Create or replace a queue's limits; returns them as stored."""
    params = {
        "ns": namespace,
        "queue": config.name,
        "concurrency": config.concurrency,
        "worker_concurrency": config.worker_concurrency,
        "rate_limit": config.rate_limit,
        "rate_period": config.rate_period,
        "per_partition": config.limits_per_partition,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_CONFIGURE, params)
        row = await cur.fetchone()
    assert row is not None
    return _config(row)


# Pausing a queue never configured gives it a row without limits; resuming one that has
# no row changes nothing (it was never paused).
_PAUSE = """
INSERT INTO durable.queues (namespace, name, paused) VALUES (%(ns)s, %(queue)s, true)
ON CONFLICT (namespace, name) DO UPDATE SET paused = true, updated_at = clock_timestamp()
RETURNING name, concurrency, worker_concurrency, rate_limit, rate_period, limits_per_partition,
          paused"""

_RESUME = """
UPDATE durable.queues SET paused = false, updated_at = clock_timestamp()
 WHERE namespace = %(ns)s AND name = %(queue)s
RETURNING name, concurrency, worker_concurrency, rate_limit, rate_period, limits_per_partition,
          paused"""


async def set_paused(
    pool: AsyncConnectionPool, namespace: str, queue: str, paused: bool
) -> QueueConfig:
    """Pause or resume a queue (idempotent); returns its configuration as stored.

    The change is made under the queue's claim lock, so once a pause returns no claim of
    the queue is under way or to come until it is resumed. A resume wakes every
    coordinator's pollers (the work channel)."""
    params = {"ns": namespace, "queue": queue, "lock_class": _LOCK_CLASS}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_LOCK, params)
        cur = await conn.execute(_PAUSE if paused else _RESUME, params)
        row = await cur.fetchone()
        if not paused:
            await conn.execute(_NOTIFY_WORK, params)
    return _config(row) if row is not None else QueueConfig(queue)


def _room(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(0, limit - used)


async def _claim_from(
    conn: AsyncConnection[Any],
    namespace: str,
    executor_id: str,
    queue: str,
    names: list[str],
    app_version: str,
    limit: int,
) -> list[WorkflowRecord]:
    params = {
        "ns": namespace,
        "exec": executor_id,
        "queue": queue,
        "names": names,
        "version": app_version,
        "lock_class": _LOCK_CLASS,
    }
    async with conn.transaction():
        await conn.execute(_LOCK, params)
        cur = await conn.execute(_USAGE, params)
        row = await cur.fetchone()
        assert row is not None
        (
            concurrency,
            worker_concurrency,
            rate_limit,
            rate_period,
            per_partition,
            paused,
            running,
            running_here,
            recent,
        ) = row
        if paused:
            return []
        room = [limit, _room(worker_concurrency, running_here)]
        if not per_partition:
            room += [_room(concurrency, running), _room(rate_limit, recent)]
        take = min(r for r in room if r is not None)
        if take <= 0:
            return []
        # Limits per partition are applied by the claim itself, partition by partition.
        cur = await conn.execute(
            _CLAIM,
            {
                **params,
                "take": take,
                "concurrency": concurrency if per_partition else None,
                "rate_limit": rate_limit if per_partition else None,
                "rate_period": rate_period if per_partition else None,
            },
        )
        return [rows.workflow(found) for found in await cur.fetchall()]


async def claim(
    pool: AsyncConnectionPool, namespace: str, executor_id: str, limit: int
) -> list[WorkflowRecord]:
    """Claim up to `limit` ENQUEUED workflows from the queues this executor serves, within
    each queue's limits; they become PENDING under the executor. A session without a live
    lease claims nothing."""
    claimed: list[WorkflowRecord] = []
    async with pool.connection() as conn:
        cur = await conn.execute(_READY, {"ns": namespace, "exec": executor_id})
        ready = await cur.fetchall()
        for queue, names, app_version in ready:
            if len(claimed) >= limit:
                break
            claimed += await _claim_from(
                conn, namespace, executor_id, queue, names, app_version, limit - len(claimed)
            )
    return claimed


@dataclass(frozen=True)
class QueueLoad:
    """What waits and runs on a queue or one of its partitions ('' for none)."""

    partition_key: str
    enqueued: int
    delayed: int
    running: int


_GET = """
SELECT name, concurrency, worker_concurrency, rate_limit, rate_period, limits_per_partition,
       paused
  FROM durable.queues WHERE namespace = %(ns)s AND name = %(queue)s"""

# The queue's live workflows by partition; the same counts over the whole queue come from
# the partial indexes on ENQUEUED and PENDING workflows of a queue.
_LOAD = """
SELECT coalesce(partition_key, ''),
       count(*) FILTER (WHERE status = 'ENQUEUED'),
       count(*) FILTER (WHERE status = 'ENQUEUED' AND due_at > clock_timestamp()),
       count(*) FILTER (WHERE status = 'PENDING')
  FROM durable.workflows
 WHERE namespace = %(ns)s AND queue_name = %(queue)s AND status IN ('ENQUEUED', 'PENDING')
 GROUP BY GROUPING SETS ((coalesce(partition_key, '')), ())
 ORDER BY GROUPING(coalesce(partition_key, '')) DESC, 2 DESC, 1"""


async def load(
    pool: AsyncConnectionPool, namespace: str, queue: str, max_partitions: int
) -> tuple[QueueConfig, QueueLoad, list[QueueLoad], bool]:
    """The queue's limits (none for a queue never configured), its total load, the load of
    its busiest partitions (at most `max_partitions`), and whether more partitions exist."""
    params = {"ns": namespace, "queue": queue}
    async with pool.connection() as conn:
        cur = await conn.execute(_GET, params)
        row = await cur.fetchone()
        config = _config(row) if row is not None else QueueConfig(queue)
        cur = await conn.execute(_LOAD, params)
        # The total's partition key is NULL (the grouping set without it).
        found = [
            QueueLoad(key or "", enqueued, delayed, running)
            for key, enqueued, delayed, running in await cur.fetchall()
        ]
    total = found[0] if found else QueueLoad("", 0, 0, 0)
    partitions = found[1:]
    return config, total, partitions[:max_partitions], len(partitions) > max_partitions
