"""Connections to the database: the guarded connect, the pool, and the schema migrations.

Every connection this process opens (pool, LISTEN, migrations) goes through `connect` or
the pool's `configure`, which run one guard query: a server in recovery (a standby), a
read-only session, or a server on an older timeline than this process has already seen
for the same cluster (a diverged old primary started again after a failover) is refused,
logged, counted, and its host skipped for a while, so libpq's multi-host URL moves on to
the next host. A connection that fails mid-request with a sign that its server is gone or
demoted (SQLSTATE class 08, 57P01-57P03, 25006) is discarded instead of going back to the
pool. And a request's deadline reaches the database: when it passes, the statement still
running for it is cancelled and its connection discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.errors import Diagnostic
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from coordinator import metrics

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every coordinator.
_MIGRATION_LOCK_ID = 0x6475726162_6C65 & 0x7FFFFFFFFFFFFFFF
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Connection settings added when the URL does not set them. Keepalives end a wait on a
# server that vanished without closing its sockets (a host or network failure, not a
# process crash) in about 20 s instead of the kernel's two hours; connect_timeout bounds a
# connect to a host that does not answer, so a multi-host URL moves on to the next one.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "durable-coordinator",
}
# How long a host that failed the guard is left out of the URL before it is tried again.
FENCE_SECONDS = 30.0
# A pooled connection idle longer than this is checked with one round trip before use:
# after a failover every idle connection is dead, and the check discards them instead of
# failing one request each. A busy pool pays nothing.
CHECK_IDLE_SECONDS = 1.0

# One query: what the guard needs to know about the server it reached. The timeline is read
# from the name of the current WAL file, which a primary switches the moment it is promoted
# (pg_control_checkpoint's timeline waits for the next checkpoint).
_GUARD_SQL = """
SELECT pg_is_in_recovery(),
       current_setting('transaction_read_only'),
       (SELECT system_identifier FROM pg_control_system()),
       CASE WHEN pg_is_in_recovery() THEN 0
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END"""

# SQLSTATEs that mean the connection's server is gone, going, or not a primary any more.
_DISCARD_STATES = frozenset({"25006", "57P01", "57P02", "57P03"})
# The WARNING a COMMIT returns when its wait for the synchronous standby was cancelled: the
# commit is local only, and a failover now would lose it. Its caller must not be told it
# succeeded.
_SYNC_WAIT_CANCELLED = "canceling wait for synchronous replication"

# The deadline (event loop time) of the request being served, set by the RPC edge.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "durable_deadline", default=None
)


class ServerRefused(psycopg.OperationalError):
    """A server the guard will not use: a standby, read-only, or on an old timeline."""


class CommitUnconfirmed(psycopg.OperationalError):
    """A COMMIT whose wait for the synchronous standby was cancelled: its outcome after a
    failover is unknown, so the caller gets UNAVAILABLE and resolves it by re-reading."""


class DatabaseNotReady(Exception):
    """No read-write server could be used within the start-up wait."""


def must_discard(exc: BaseException) -> bool:
    """Whether a connection that raised `exc` may be talking to a dead or demoted server."""
    if isinstance(exc, psycopg.OperationalError | pg_errors.ReadOnlySqlTransaction):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and (sqlstate in _DISCARD_STATES or sqlstate[:2] == "08")


def unavailable_reason(exc: BaseException) -> str | None:
    """Why `exc` means the database is unavailable (UNAVAILABLE, retryable), or None."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return "no database connection became free in time"
    if isinstance(exc, CommitUnconfirmed | ServerRefused):
        return str(exc)
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return "the database server is read-only (a standby, or being demoted)"
    if isinstance(exc, pg_errors.QueryCanceled):
        return "the statement was cancelled (the request's deadline passed, or an operator)"
    if must_discard(exc):
        return f"the database connection failed: {str(exc).strip()[:200]}"
    return None


class _Guard:
    """The newest timeline seen per cluster, and the hosts refused lately."""

    def __init__(self) -> None:
        self.timelines: dict[int, int] = {}
        self.fenced: dict[tuple[str, str], float] = {}

    def fence(self, host: str, port: str) -> None:
        self.fenced[(host, port)] = time.monotonic() + FENCE_SECONDS

    def is_fenced(self, host: str, port: str) -> bool:
        until = self.fenced.get((host, port))
        if until is None:
            return False
        if until < time.monotonic():
            del self.fenced[(host, port)]
            return False
        return True


GUARD = _Guard()


def _hosts(params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (host, port) pairs a URL names, when it names several (and no hostaddr)."""
    hosts = str(params.get("host") or "").split(",")
    if len(hosts) < 2 or "hostaddr" in params:
        return []
    ports = str(params.get("port") or "").split(",")
    ports = ports if len(ports) == len(hosts) else [ports[0]] * len(hosts)
    return list(zip(hosts, ports, strict=True))


def conninfo(url: str) -> str:
    """`url` with CONNECTION_DEFAULTS for what it does not set, less the hosts fenced lately
    (unless that would leave none)."""
    params = conninfo_to_dict(url)
    extra = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in params}
    hosts = _hosts(params)
    kept = [(h, p) for h, p in hosts if not GUARD.is_fenced(h, p)]
    if kept and len(kept) < len(hosts):
        extra["host"] = ",".join(h for h, _ in kept)
        extra["port"] = ",".join(p for _, p in kept)
    return make_conninfo(url, **extra)


async def _server_state(conn: psycopg.AsyncConnection[Any]) -> tuple[bool, str, int, int]:
    """(in recovery, transaction_read_only, system identifier, timeline; 0 on a standby)."""
    cur = await conn.execute(_GUARD_SQL)
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), str(row[1]), int(row[2]), int(row[3])


async def _newest_elsewhere(url: str, here: tuple[str, str], system_id: int) -> int:
    """The newest timeline of a primary of the same cluster among the URL's other hosts.

    Asked once per cluster, by the first connection of a process that has seen none: a
    coordinator (re)started after a failover has no timeline to compare with, and would
    otherwise take a diverged old primary listed first in the URL for the primary."""
    newest = 0
    for host, port in _hosts(conninfo_to_dict(url)):
        if (host, port) == here:
            continue
        target = make_conninfo(
            conninfo(url), host=host, port=port, target_session_attrs="any", connect_timeout="2"
        )
        try:
            async with await psycopg.AsyncConnection.connect(target, autocommit=True) as other:
                in_recovery, _, other_id, timeline = await _server_state(other)
        except psycopg.Error:
            continue  # down or unreachable: nothing to compare
        if other_id == system_id and not in_recovery:
            newest = max(newest, timeline)
    return newest


async def guard(conn: psycopg.AsyncConnection[Any], url: str | None = None) -> None:
    """Refuse (raise ServerRefused) a connection to a server this process must not write to.
    With the `url` it came from, the first connection to a cluster also compares timelines
    with the URL's other hosts."""
    in_recovery, read_only, system_id, timeline = await _server_state(conn)
    host, port = conn.info.host, str(conn.info.port)
    where = f"{host}:{port}"
    if in_recovery:
        _refuse(host, port, "standby", f"{where} is a standby (in recovery), not a primary")
    if read_only == "on":
        _refuse(host, port, "read_only", f"{where} opens read-only sessions")
    if system_id not in GUARD.timelines and url is not None:
        elsewhere = await _newest_elsewhere(url, (host, port), system_id)
        if elsewhere:
            GUARD.timelines[system_id] = max(GUARD.timelines.get(system_id, 0), elsewhere)
    newest = GUARD.timelines.get(system_id, 0)
    if timeline < newest:
        _refuse(
            host,
            port,
            "old_timeline",
            f"{where} is on timeline {timeline}, but this cluster (system identifier "
            f"{system_id}) has been seen on timeline {newest}: a diverged old primary; "
            "refusing it (fence it, then rebuild it as a standby)",
        )
    if timeline > newest:
        if newest:
            log.warning("database %s: the cluster moved to timeline %d (failover)", where, timeline)
        GUARD.timelines[system_id] = timeline
    conn.add_notice_handler(_sync_wait_watcher(conn))


def guard_for(url: str) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    """`guard` for connections made from `url` (the pool's `configure`)."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await guard(conn, url)

    return configure


def _refuse(host: str, port: str, reason: str, message: str) -> None:
    GUARD.fence(host, port)
    metrics.DATABASE_REFUSED.labels(reason).inc()
    if reason == "old_timeline":
        log.error("refusing database connection: %s", message)
    else:
        log.warning("refusing database connection: %s", message)
    raise ServerRefused(message)


# Connections whose last COMMIT's synchronous-replication wait was cancelled.
_UNCONFIRMED: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
# When each pooled connection was last returned to the pool.
_RETURNED: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


def _sync_wait_watcher(conn: psycopg.AsyncConnection[Any]) -> Callable[[Diagnostic], None]:
    """A notice handler marking `conn` when a COMMIT's synchronous-replication wait was
    cancelled (a WARNING, not an error: psycopg would report success)."""
    ref = weakref.ref(conn)

    def on_notice(diag: Diagnostic) -> None:
        if (diag.message_primary or "").startswith(_SYNC_WAIT_CANCELLED):
            owner = ref()
            if owner is not None:
                _UNCONFIRMED.add(owner)

    return on_notice


async def connect(url: str, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection that passed the guard (for LISTEN and migrations)."""
    conn = await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True, **kwargs)
    try:
        await guard(conn, url)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _check(conn: psycopg.AsyncConnection[Any]) -> None:
    if time.monotonic() - _RETURNED.get(conn, 0.0) > CHECK_IDLE_SECONDS:
        await conn.execute("")


async def _returned(conn: psycopg.AsyncConnection[Any]) -> None:
    _RETURNED[conn] = time.monotonic()


class Pool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """The pool, with the discard rules and the request deadline applied to each checkout.

    While `not_ready` says why (the server sets it until migrations are applied), checkouts
    fail at once with that reason, so calls made while the coordinator waits for a primary
    get UNAVAILABLE at once instead of waiting out the pool's timeout.
    """

    not_ready: str | None = None
    # The bound on one checkout's database work when the request has no deadline of its own
    # (a Session stream's calls, background loops): past it the statement is cancelled as
    # at a deadline. None: unbounded.
    call_timeout: float | None = None

    @contextlib.asynccontextmanager
    async def connection(
        self, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.not_ready is not None:
            raise ServerRefused(self.not_ready)
        loop = asyncio.get_running_loop()
        deadline = DEADLINE.get()
        if deadline is None and self.call_timeout is not None:
            deadline = loop.time() + self.call_timeout
        if deadline is not None:
            left = max(0.0, deadline - loop.time())
            timeout = left if timeout is None else min(timeout, left)
        async with super().connection(timeout) as conn:
            checkout = _Checkout(conn)
            timer = None if deadline is None else loop.call_at(deadline, checkout.deadline_passed)
            try:
                yield conn
            except BaseException as exc:
                # Cancelled mid-statement (the client left): the connection's state is unknown.
                busy = conn.pgconn.transaction_status == TransactionStatus.ACTIVE
                if must_discard(exc) or busy or checkout.expired:
                    await conn.close()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if conn in _UNCONFIRMED:
                await conn.close()
                raise CommitUnconfirmed(
                    "the commit was not confirmed by the synchronous standby; its outcome is "
                    "unknown until read again"
                )
            if checkout.expired:
                # A cancel may be on its way to this connection: not for the next user's query.
                await conn.close()


@dataclass
class _Checkout:
    conn: psycopg.AsyncConnection[Any]
    expired: bool = False
    cancelling: asyncio.Task[None] | None = None

    def deadline_passed(self) -> None:
        """The request's deadline passed while it held the connection: cancel what runs
        there now, so no lock is held past the caller's deadline."""
        self.expired = True
        if self.conn.closed or self.conn.pgconn.transaction_status == TransactionStatus.IDLE:
            return
        log.warning("a request's deadline passed during its database statement: cancelling it")
        metrics.DEADLINE_CANCELS.inc()
        self.cancelling = asyncio.create_task(_cancel(self.conn))


async def _cancel(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.cancel_safe(timeout=2.0)


def new_pool(url: str, min_size: int, max_size: int, *, max_lifetime: float = 1800.0) -> Pool:
    """A pool of guarded autocommit connections, not open yet."""
    return Pool(
        lambda: conninfo(url),  # re-read per connection: fenced hosts are left out
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
        configure=guard_for(url),
        check=_check,
        reset=_returned,
        # Recycled: connections drift to whichever host a URL's DNS name points at now.
        max_lifetime=max_lifetime,
        # A request waiting longer than this for a connection gets UNAVAILABLE.
        timeout=10.0,
        # While the database is down the pool retries each lost connection with doubling
        # delays, and only gives up (then starts afresh when a request needs one) after
        # this long. Psycopg's default of 5 minutes lets the delay grow past a minute, so
        # a recovered database could go unused that long; this keeps the gap to seconds.
        reconnect_timeout=10.0,
    )


async def open_pool(url: str, min_size: int, max_size: int, timeout: float = 30.0) -> Pool:
    """`new_pool`, opened: waits until `min_size` connections are connected."""
    pool = new_pool(url, min_size, max_size)
    await pool.open(wait=True, timeout=timeout)
    return pool


def _migration_files() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("coordinator.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(url: str) -> list[int]:
    """Apply the migrations this database lacks; returns the versions applied.

    Safe when several coordinators start at once: everything happens in one transaction
    holding an advisory lock, so the others wait and then find nothing to do.
    """
    async with await connect(url) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        await conn.execute("CREATE SCHEMA IF NOT EXISTS durable")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS durable.schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur = await conn.execute("SELECT version FROM durable.schema_migrations")
        applied = {row[0] for row in await cur.fetchall()}
        done = []
        for version, name, sql in _migration_files():
            if version in applied:
                continue
            log.info("applying migration %04d_%s", version, name)
            await conn.execute(sql.encode())
            await conn.execute(
                "INSERT INTO durable.schema_migrations (version, name) VALUES (%s, %s)",
                (version, name),
            )
            done.append(version)
        return done


async def wait_and_migrate(
    url: str, wait_seconds: float, on_wait: Callable[[str], None] | None = None
) -> list[int]:
    """`migrate`, retried while no read-write server can be used, for at most `wait_seconds`;
    raises DatabaseNotReady saying why after that. Each new reason is logged, and given to
    `on_wait`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    pause, last = 0.2, ""
    while True:
        try:
            return await migrate(url)
        except (psycopg.OperationalError, pg_errors.ReadOnlySqlTransaction) as exc:
            reason = unavailable_reason(exc) or str(exc)
            left = deadline - loop.time()
            if left <= 0:
                raise DatabaseNotReady(
                    f"no read-write database within {wait_seconds:g}s: {reason}"
                ) from None
            if on_wait is not None:
                on_wait(reason)
            if reason != last:
                log.warning("waiting for a read-write database (%.0fs left): %s", left, reason)
                last = reason
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)
