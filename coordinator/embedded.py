"""An embedded Postgres (from the pgserver wheel) for running without a database URL."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A Postgres server whose data lives in a local directory."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.url: str = server.get_uri()

    def cleanup(self) -> None:
        """Stop the server now (and delete its data if it was started as temporary)."""
        self._server.cleanup()


def start_embedded_postgres(data_dir: Path, *, temporary: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) a Postgres in `data_dir`.

    The server stops when the last process that started it exits. The data directory
    persists between runs unless `temporary`, in which case it is deleted then.
    """
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is
        # unset (containers, CI); the fallback it picks is fine.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver  # imported here: only this mode needs it

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded Postgres in %s", data_dir)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir, cleanup_mode="delete" if temporary else "stop"
    )
    return EmbeddedPostgres(server)
