"""The connection pool and the schema migrations applied at start-up."""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every coordinator.
_MIGRATION_LOCK_ID = 0x6475726162_6C65 & 0x7FFFFFFFFFFFFFFF
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


async def open_pool(
    url: str, min_size: int, max_size: int, timeout: float = 30.0
) -> AsyncConnectionPool:
    """Open a pool of autocommit connections; waits until `min_size` are connected."""
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
        # A request waiting longer than this for a connection gets UNAVAILABLE.
        timeout=10.0,
        # While the database is down the pool retries each lost connection with doubling
        # delays, and only gives up (then starts afresh when a request needs one) after
        # this long. Psycopg's default of 5 minutes lets the delay grow past a minute, so
        # a recovered database could go unused that long; this keeps the gap to seconds.
        reconnect_timeout=10.0,
    )
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
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
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
