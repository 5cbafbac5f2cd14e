"""An embedded Postgres (from the pgserver wheel) for running without a database URL."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) a Postgres whose data lives in `data_dir`; returns its URL.

    The data directory persists between runs. The server stops when the last process
    that started it exits.
    """
    import pgserver  # imported here: only this mode needs it

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded Postgres in %s", data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    url: str = server.get_uri()
    return url
