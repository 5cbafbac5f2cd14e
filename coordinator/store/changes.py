"""The workflow change log (durable.workflow_changes, migration 0010) read by WatchWorkflows.

Every status change of a workflow is appended by a trigger with its transaction's ID. A
reader reads only the rows whose transaction is older than its snapshot's xmin (each of
those has committed or rolled back), in (xid, seq) order, so no row can ever appear
behind a reader's position, however the writers' commits interleave. A position is that
pair; on the wire it is the opaque cursor "<xid>.<seq>".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows
from coordinator.store.filters import WorkflowFilter
from coordinator.store.records import Status, WorkflowRecord

# The NOTIFY the trigger sends (payload: the namespace) after a transaction that changed
# a status commits.
CHANGES_CHANNEL = "durable_workflow_changes"
# ASCII digits only (str.isdigit would take other scripts' digits), within a bigint.
_CURSOR = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})")


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: after every change at or before (xid, seq)."""

    xid: int
    seq: int

    def cursor(self) -> str:
        return f"{self.xid}.{self.seq}"

    @staticmethod
    def parse(cursor: str) -> Position | None:
        found = _CURSOR.fullmatch(cursor)
        return Position(int(found[1]), int(found[2])) if found else None


@dataclass(frozen=True)
class Change:
    position: Position
    # The status the change set, and the workflow as it is now but with that status.
    record: WorkflowRecord
    changed_at: datetime


@dataclass(frozen=True)
class Batch:
    # The matching changes, in order.
    changes: list[Change]
    # Where the next read starts: past every row read (matching or not).
    position: Position
    # Rows after `position` exist whose transactions were still open at the read: they
    # become readable once those end, which no notification may announce.
    pending: bool
    # The window was full: read again at once.
    more: bool


async def now(pool: AsyncConnectionPool) -> tuple[Position, str]:
    """The position "from now" (before every change a transaction still open may make),
    and the snapshot it was taken in: the changes it sees are before now, though their
    transactions may be past the position (pass it to `read` as `skip_seen_by`)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s::text, pg_snapshot_xmin(s)::text::bigint FROM pg_current_snapshot() AS s"
        )
        row = await cur.fetchone()
    assert row is not None
    return Position(row[1], 0), row[0]


async def exists(pool: AsyncConnectionPool, namespace: str, position: Position) -> bool:
    """Whether the change a cursor names is still kept."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT 1 FROM durable.workflow_changes
                WHERE seq = %(seq)s AND xid = %(xid)s::text::xid8 AND namespace = %(ns)s""",
            {"seq": position.seq, "xid": str(position.xid), "ns": namespace},
        )
        return await cur.fetchone() is not None


# The horizon: every change row with a smaller xid is final (committed and visible to this
# statement, or rolled back). It is the oldest transaction the statement's snapshot sees
# running, leaving out those that pg_stat_activity (read after the snapshot) shows in
# another database: they cannot write this database's log, and xids are cluster-wide, so
# without this a long transaction anywhere on the server would hold every watch back. A
# transaction that ended between the snapshot and that read counts (conservative: the next
# read moves on), as does one whose backend_xid this role may not see.
_HORIZON = """horizon AS (
    SELECT coalesce(
        (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
          WHERE x::text::bigint %% 4294967296 NOT IN (
                SELECT backend_xid::text::bigint FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL
                   AND datname IS DISTINCT FROM current_database())),
        pg_snapshot_xmax(pg_current_snapshot())) AS xmin)"""

_COLUMNS = ", ".join(f"w.{c.strip()}" for c in rows.WORKFLOW_COLUMNS.split(","))


def _read_sql(where: str) -> str:
    # One statement, so the horizon and the rows come from the same snapshot. The window
    # is the next `limit` readable rows, matching or not; only the matching ones and the
    # window's last row (to move the position past the rest) are returned.
    return f"""
WITH {_HORIZON},
win AS (
    SELECT c.seq, c.xid, c.workflow_id, c.status, c.changed_at
      FROM durable.workflow_changes c
     WHERE c.namespace = %(ns)s
       AND (c.xid, c.seq) > (%(xid)s::text::xid8, %(seq)s)
       AND c.xid < (SELECT xmin FROM horizon)
       AND (%(seen)s::pg_snapshot IS NULL OR NOT pg_visible_in_snapshot(c.xid, %(seen)s))
     ORDER BY c.xid, c.seq
     LIMIT %(limit)s),
marked AS (
    SELECT win.seq AS c_seq, win.xid AS c_xid, win.status AS c_status,
           win.changed_at AS c_changed_at,
           row_number() OVER (ORDER BY win.xid DESC, win.seq DESC) = 1 AS last,
           count(*) OVER () AS n,
           (cardinality(%(c_statuses)s::text[]) = 0 OR win.status = ANY(%(c_statuses)s::text[]))
           AND w.workflow_id IS NOT NULL AND {where} AS hit,
           {_COLUMNS}
      FROM win
      LEFT JOIN durable.workflows w
        ON w.workflow_id = win.workflow_id AND w.namespace = %(ns)s)
SELECT c_seq, c_xid::text::bigint, c_status, c_changed_at, hit, n,
       EXISTS (SELECT 1 FROM durable.workflow_changes p
                WHERE p.namespace = %(ns)s AND p.xid >= (SELECT xmin FROM horizon)
                  AND (p.xid, p.seq) > (%(xid)s::text::xid8, %(seq)s)),
       {rows.WORKFLOW_COLUMNS}
  FROM marked WHERE hit OR last
 ORDER BY c_xid, c_seq"""


async def read(
    pool: AsyncConnectionPool,
    namespace: str,
    where: WorkflowFilter,
    after: Position,
    limit: int,
    *,
    skip_seen_by: str | None = None,
) -> Batch:
    """The next readable changes after `after` (at most `limit` rows looked at) that match
    `where` (its statuses test the status the change set), leaving out the changes the
    snapshot `skip_seen_by` saw (a stream "from now" started in it)."""
    # The status is the change's; the rest of the filter tests the workflow as it is now.
    rest = dataclasses.replace(where, statuses=(), created_after=None, created_before=None)
    params: dict[str, Any] = {
        **rest.params(),
        "c_statuses": [s.value for s in where.statuses],
        "ns": namespace,
        "xid": str(after.xid),
        "seq": after.seq,
        "limit": limit,
        "seen": skip_seen_by,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_read_sql(rest.where("w")).encode(), params)
        found = await cur.fetchall()
    changes = []
    position = after
    pending = more = False
    for row in found:
        seq, xid, status, changed_at, hit, n, pending = row[:7]
        position = max(position, Position(xid, seq))
        more = n >= limit
        if hit:
            record = dataclasses.replace(rows.workflow(row[7:]), status=Status(status))
            changes.append(Change(Position(xid, seq), record, changed_at))
    if not found:
        pending = await _pending(pool, namespace, after)
    return Batch(changes, position, pending, more)


async def _pending(pool: AsyncConnectionPool, namespace: str, after: Position) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"""WITH {_HORIZON}
               SELECT EXISTS (SELECT 1 FROM durable.workflow_changes
                WHERE namespace = %(ns)s
                  AND (xid, seq) > (%(xid)s::text::xid8, %(seq)s)
                  AND xid >= (SELECT xmin FROM horizon))""".encode(),
            {"ns": namespace, "xid": str(after.xid), "seq": after.seq},
        )
        row = await cur.fetchone()
    return bool(row and row[0])
