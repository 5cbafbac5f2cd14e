"""Retention policies, and deleting finished workflows with everything that belongs to them.

What belongs to a workflow: its rows in steps, step_attempts, events, event_history and
step_deadlines (and any later per-workflow table with a foreign key to workflows ON DELETE
CASCADE), and the messages addressed to it. Those are deleted here explicitly, table by
table (so each table's count is known), then the workflow rows; the cascade then finds
nothing left. durable.messages has no foreign key (a message may be sent before its
destination exists), so without the explicit delete they would stay.

Every delete first locks the workflows it deletes (`FOR UPDATE`) and keeps only those
still finished under the lock: a workflow resumed meanwhile is left alone. Children keep
the ID of a deleted parent in parent_workflow_id (a dangling reference, as a parent that
never existed); a parent keeps its START_WORKFLOW step naming a deleted child.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from coordinator.errors import WorkflowNotFinished

FINISHED = ("SUCCESS", "ERROR", "CANCELLED", "DEAD_LETTER")
_FINISHED_SQL = "('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER')"

# The per-workflow tables, in the order they are emptied (workflows last).
TABLES = ("steps", "step_attempts", "events", "event_history", "step_deadlines", "messages")

_GET_POLICY = "SELECT finished_after FROM durable.retention_policies WHERE namespace = %(ns)s"

_SET_POLICY = """
INSERT INTO durable.retention_policies (namespace, finished_after)
VALUES (%(ns)s, make_interval(secs => %(seconds)s))
ON CONFLICT (namespace) DO UPDATE
   SET finished_after = excluded.finished_after, updated_at = clock_timestamp()"""

_CLEAR_POLICY = "DELETE FROM durable.retention_policies WHERE namespace = %(ns)s"

_ALL_POLICIES = "SELECT namespace, finished_after FROM durable.retention_policies"

# The namespaces holding finished workflows: one descent of workflows_finished_idx per
# namespace (a loose index scan), not a scan of the table.
_FINISHED_NAMESPACES = f"""
WITH RECURSIVE ns(namespace) AS (
    (SELECT namespace FROM durable.workflows WHERE status IN {_FINISHED_SQL}
      ORDER BY namespace LIMIT 1)
    UNION ALL
    SELECT (SELECT w.namespace FROM durable.workflows w
             WHERE w.status IN {_FINISHED_SQL} AND w.namespace > ns.namespace
             ORDER BY w.namespace LIMIT 1)
      FROM ns WHERE ns.namespace IS NOT NULL
)
SELECT namespace FROM ns WHERE namespace IS NOT NULL"""

# One batch of expired workflows, locked. SKIP LOCKED: rows another coordinator's batch
# (or a running update) holds are left to it, so coordinators never wait on each other or
# delete a workflow twice. In READ COMMITTED a row changed since the statement's snapshot
# is re-checked against the WHERE clause under the lock: one resumed meanwhile drops out.
_LOCK_EXPIRED = f"""
SELECT workflow_id FROM durable.workflows
 WHERE namespace = %(ns)s AND status IN {_FINISHED_SQL}
   AND updated_at < clock_timestamp() - %(after)s::interval
 ORDER BY updated_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED"""

# A workflow and, with %(children)s, its descendants (workflows_parent_idx), each once.
_TREE = """
WITH RECURSIVE tree(workflow_id) AS (
    SELECT workflow_id FROM durable.workflows
     WHERE workflow_id = %(wf)s AND namespace = %(ns)s
    UNION
    SELECT w.workflow_id FROM durable.workflows w JOIN tree t
        ON w.namespace = %(ns)s AND w.parent_workflow_id = t.workflow_id
     WHERE %(children)s
)
SELECT workflow_id FROM tree"""

# Locked in ID order, so two overlapping deletes cannot deadlock.
_LOCK_TREE = """
SELECT workflow_id, status FROM durable.workflows
 WHERE workflow_id = ANY(%(ids)s) AND namespace = %(ns)s
 ORDER BY workflow_id
   FOR UPDATE"""

_DELETE_ROWS = {
    table: f"DELETE FROM durable.{table} WHERE {column} = ANY(%(ids)s) AND namespace = %(ns)s"
    for table, column in (
        *((t, "workflow_id") for t in TABLES if t != "messages"),
        ("messages", "destination_id"),
    )
}

_DELETE_WORKFLOWS = f"""
DELETE FROM durable.workflows
 WHERE workflow_id = ANY(%(ids)s) AND namespace = %(ns)s AND status IN {_FINISHED_SQL}"""


@dataclass
class Deleted:
    """What one delete removed: workflows, and rows per table (workflows included)."""

    workflows: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, other: Deleted) -> None:
        self.workflows += other.workflows
        for table, count in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + count

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


async def get_policy(pool: AsyncConnectionPool, namespace: str) -> timedelta | None:
    """The namespace's own retention (None: it has none)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_GET_POLICY, {"ns": namespace})
        row = await cur.fetchone()
    return None if row is None else row[0]


async def set_policy(pool: AsyncConnectionPool, namespace: str, seconds: float | None) -> None:
    """Set the namespace's retention, or remove it (None)."""
    async with pool.connection() as conn:
        if seconds is None:
            await conn.execute(_CLEAR_POLICY, {"ns": namespace})
        else:
            await conn.execute(_SET_POLICY, {"ns": namespace, "seconds": seconds})


async def policies(
    pool: AsyncConnectionPool, default: timedelta | None
) -> list[tuple[str, timedelta]]:
    """(namespace, retention) for every namespace with a retention in force: each policy,
    and with a configured `default` every other namespace holding finished workflows."""
    async with pool.connection() as conn:
        cur = await conn.execute(_ALL_POLICIES)
        own: dict[str, timedelta] = {ns: after for ns, after in await cur.fetchall()}
        if default is not None:
            cur = await conn.execute(_FINISHED_NAMESPACES)
            for (namespace,) in await cur.fetchall():
                own.setdefault(namespace, default)
    return sorted(own.items())


async def _delete_locked(conn: AsyncConnection[Any], namespace: str, ids: list[str]) -> Deleted:
    """Delete the workflows `ids` (locked by this transaction, all finished) and their rows."""
    deleted = Deleted()
    if not ids:
        return deleted
    params = {"ids": ids, "ns": namespace}
    for table, sql in _DELETE_ROWS.items():
        cur = await conn.execute(sql, params)
        deleted.rows[table] = cur.rowcount
    cur = await conn.execute(_DELETE_WORKFLOWS, params)
    deleted.workflows = deleted.rows["workflows"] = cur.rowcount
    return deleted


async def delete_expired_batch(
    pool: AsyncConnectionPool, namespace: str, after: timedelta, limit: int
) -> Deleted:
    """Delete at most `limit` of the namespace's workflows finished more than `after` ago,
    in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_LOCK_EXPIRED, {"ns": namespace, "after": after, "limit": limit})
        ids = [row[0] for row in await cur.fetchall()]
        return await _delete_locked(conn, namespace, ids)


async def delete_workflow(
    pool: AsyncConnectionPool, namespace: str, workflow_id: str, include_children: bool
) -> Deleted:
    """Delete one finished workflow (and its descendants with `include_children`); any of
    them unfinished: WorkflowNotFinished, nothing deleted. A missing one: nothing."""
    params = {"ns": namespace, "wf": workflow_id, "children": include_children}
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_TREE, params)
        ids = [row[0] for row in await cur.fetchall()]
        if not ids:
            return Deleted()
        cur = await conn.execute(_LOCK_TREE, {"ids": ids, "ns": namespace})
        locked = await cur.fetchall()
        # The asked-for workflow first in the error, then its descendants by ID.
        for found_id, status in sorted(locked, key=lambda row: row[0] != workflow_id):
            if status not in FINISHED:
                raise WorkflowNotFinished(found_id, status)
        return await _delete_locked(conn, namespace, [row[0] for row in locked])
