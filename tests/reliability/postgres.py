"""A Postgres server of the test's own, to restart under load: initdb and pg_ctl from the
binaries the pgserver wheel ships (a project dependency), on a loopback TCP port.

The session's shared Postgres (embedded, or DATABASE_URL) cannot be restarted without
disturbing other tests, so the database-fault test runs on this one.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

from tests.support import free_port

# Postgres refuses to run as root; pgserver runs it as this user then, and so do we.
SYSTEM_USER = "pgserver"


def _binaries() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # platformdirs, as in coordinator.embedded
        import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _as_root_prepare(root: Path, bin_dir: Path) -> str:
    """Let SYSTEM_USER run the binaries and own `root`, as pgserver does for itself."""
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | readable)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


START_ATTEMPTS = 3


class DedicatedPostgres:
    """A Postgres cluster in a temporary directory, listening on 127.0.0.1:`port`."""

    def __init__(self, *, initdb: bool = True) -> None:
        """`initdb=False`: leave the data directory for the caller to fill (a base backup,
        tests/reliability/replication.py) and do not start."""
        self._bin = _binaries()
        self.root = Path(tempfile.mkdtemp(prefix="durable-pgfault-"))
        self.root.chmod(0o755)
        self._user = _as_root_prepare(self.root, self._bin) if os.geteuid() == 0 else None
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if initdb:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "utf8"
            )
            self.start()

    def _call(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._bin / program), *args],
            user=self._user,
            capture_output=True,
            text=True,
            timeout=60,
            # pg_ctl start leaves the postmaster running with our pipes: detach it from them.
            stdin=subprocess.DEVNULL,
        )

    def _run(self, program: str, *args: str) -> None:
        result = self._call(program, *args)
        assert result.returncode == 0, f"{program} {args}: {result.stdout}{result.stderr}"

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", *args)

    def start(self, *settings: str) -> None:
        """Start the server (`settings`: extra postgres options, "-c name=value"); a failed
        start is tried again (twice at most) before failing with the end of the server's log.
        What is under test is the coordinator riding through a restart, not pg_ctl: a start
        seen failing once in CI with no output."""
        options = " ".join((f"-h 127.0.0.1 -p {self.port} -k {self.data}", *settings))
        args = ("-D", str(self.data), "-w", "-t", "30", "-l", str(self.log_path))
        failures = []
        for _ in range(START_ATTEMPTS):
            result = self._call("pg_ctl", *args, "-o", options, "start")
            if result.returncode == 0:
                return
            failures.append(f"exit {result.returncode}: {result.stdout}{result.stderr}")
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        raise AssertionError(
            f"pg_ctl start failed {START_ATTEMPTS} times: {failures}\n"
            f"--- end of {self.log_path} ---\n{log[-4000:]}"
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, as when Postgres is restarted."""
        self._ctl("-m", "fast", "stop")

    def close(self) -> None:
        try:
            self._ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
