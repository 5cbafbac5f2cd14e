"""A primary and a streaming-replication standby on localhost, built from the binaries the
pgserver wheel ships (tests/reliability/postgres.py), to fail over under load.

The standby is a `pg_basebackup -R` of the primary through a physical replication slot.
With `synchronous=True` the primary names it in `synchronous_standby_names` (matched by
the `application_name` of its `primary_conninfo`: without that match replication silently
stays asynchronous, so the rig checks `pg_stat_replication.sync_state`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psycopg

from tests.reliability.postgres import DedicatedPostgres
from tests.support import eventually

STANDBY_NAME = "standby"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a postmaster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reaped by nobody yet) is as good as gone.
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


class ReplicatedPostgres:
    """`primary` and `standby`; `url` names both, for libpq to find the read-write one."""

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.primary = DedicatedPostgres()
        self.standby = DedicatedPostgres(initdb=False)
        try:
            self._build_standby()
        except BaseException:
            self.close()
            raise
        self.url = (
            f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
            "/postgres?target_session_attrs=read-write"
        )

    def _build_standby(self) -> None:
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (STANDBY_NAME,))
        self.standby._run(
            "pg_basebackup",
            *("-D", str(self.standby.data), "-h", "127.0.0.1", "-p", str(self.primary.port)),
            *("-U", "postgres", "-R", "-X", "stream", "-S", STANDBY_NAME),
        )
        # -R wrote primary_conninfo without an application_name; a later line wins.
        with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"primary_conninfo = 'host=127.0.0.1 port={self.primary.port} user=postgres "
                f"application_name={STANDBY_NAME}'\n"
            )
        self.standby.start()
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            if self.synchronous:
                conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
                conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
                conn.execute("SELECT pg_reload_conf()")
            wanted = "sync" if self.synchronous else "async"

            def streaming() -> bool:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (STANDBY_NAME,),
                ).fetchone()
                return row is not None and row[0] == wanted

            eventually(streaming, timeout=30, interval=0.1)

    def postmaster_pid(self, server: DedicatedPostgres) -> int:
        return int((server.data / "postmaster.pid").read_text().split()[0])

    def kill_primary(self) -> tuple[float, float]:
        """SIGKILL the primary's postmaster (its backends notice and exit on their own).
        Returns when it was killed and when its last process was gone (time.monotonic()):
        a backend busy with a commit may still answer in between."""
        pid = self.postmaster_pid(self.primary)
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        eventually(lambda: not any(_alive(p) for p in (pid, *children)), timeout=30, interval=0.01)
        return killed, time.monotonic()

    def promote(self) -> None:
        self.standby._ctl("promote")

    def restart_old_primary(self) -> None:
        """Start the killed primary again as it was: not a standby, on its old timeline.
        Without its standby a synchronous commit there would wait for ever, so it starts
        with synchronous replication off: a write that reached it would then succeed, the
        worst case for the guard under test."""
        # The killed postmaster may linger as a zombie (in a container whose init reaps
        # nothing); Postgres would take its PID for a live server. Like a host that crashed
        # and booted again, the lock file is stale: remove it.
        if not _alive(self.postmaster_pid(self.primary)):
            (self.primary.data / "postmaster.pid").unlink()
            socket = self.primary.data / f".s.PGSQL.{self.primary.port}"
            for stale in (socket, socket.with_name(socket.name + ".lock")):
                stale.unlink(missing_ok=True)
        self.primary.start("-c synchronous_standby_names=''")

    def close(self) -> None:
        for server in (self.standby, self.primary):
            # Already stopped (killed): close removed its directory anyway.
            with contextlib.suppress(AssertionError):
                server.close()
