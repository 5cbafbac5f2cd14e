"""The coordinator's configuration: one frozen dataclass, filled by cli.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    """Everything the coordinator reads at start-up; nothing else reads the environment."""

    listen: str = "127.0.0.1:50051"
    # None: run on an embedded Postgres kept in `data_dir`.
    database_url: str | None = None
    data_dir: Path = Path(".durable/pgdata")
    pool_min_size: int = 2
    pool_max_size: int = 10
    max_payload_bytes: int = 1024 * 1024
    # Upper bound for any wait a client may ask for (GetEvent, AwaitWorkflow).
    max_wait_seconds: float = 24 * 3600.0
    # Byte budget of a StartWorkflow history or a ListSteps page. A page may pass it by one
    # step, so with the default payload limit every reply stays under gRPC's default 4 MiB
    # receive limit, which clients in other languages keep unless they raise it.
    history_budget_bytes: int = 2 * 1024 * 1024
    shutdown_grace_seconds: float = 5.0
    log_level: str = "INFO"
