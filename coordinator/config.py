"""The coordinator's configuration: one frozen dataclass, filled by cli.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Config:
    """Everything the coordinator reads at start-up; nothing else reads the environment."""

    listen: str = "127.0.0.1:50051"
    # None: run on an embedded Postgres kept in `data_dir`.
    database_url: str | None = None
    data_dir: Path = Path(".durable/pgdata")
    pool_min_size: int = 2
    pool_max_size: int = 10
    # Pooled connections are replaced after this long (psycopg_pool's max_lifetime).
    pool_max_lifetime_seconds: float = 1800.0
    # At start-up, how long to wait for a read-write database (all hosts down, only a
    # standby reachable...) before exiting with an error; meanwhile health is NOT_SERVING.
    database_wait_seconds: float = 300.0
    # Longest a call's database work may run when the call carries no deadline of its own
    # (calls in a Session stream, background loops): then it is cancelled, its locks freed.
    database_call_timeout_seconds: float = 60.0
    # Group commit: RunStep and SetEvent requests arriving while earlier ones are being
    # committed share the next transaction, at most this many in one.
    group_commit: bool = True
    group_commit_max_batch: int = 128
    max_payload_bytes: int = 1024 * 1024
    # Upper bound for any wait a client may ask for (GetEvent, AwaitWorkflow).
    max_wait_seconds: float = 24 * 3600.0
    # Byte budget of a StartWorkflow history or a ListSteps page. A page may pass it by one
    # step, so with the default payload limit every reply stays under gRPC's default 4 MiB
    # receive limit, which clients in other languages keep unless they raise it.
    history_budget_bytes: int = 2 * 1024 * 1024
    shutdown_grace_seconds: float = 5.0
    log_level: str = "INFO"
    # "text" for people, "json" for log collectors (one object per line).
    log_format: str = "text"
    # host:port of the Prometheus /metrics endpoint; None: no endpoint.
    metrics_listen: str | None = None
    # Trace RPCs with OpenTelemetry (exporter configured by the standard OTEL_* variables).
    otel: bool = False
    # A workflow whose workers die more often than this goes to DEAD_LETTER.
    max_recovery_attempts: int = 10
    # How often unfinished workflows are checked against their deadlines, and how often an
    # idle PollWork looks again for workflows whose worker's lease lapsed.
    sweep_seconds: float = 1.0
    # How often the database is probed for the health service.
    health_probe_seconds: float = 1.0
    # TLS: server certificate chain and key (PEM); with a client CA, clients must present a
    # certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Retention: finished workflows of namespaces without a policy of their own
    # (SetRetention) are deleted this long after their last change; None: kept forever.
    retention_seconds: float | None = None
    # How often every coordinator's clean-up loop looks for expired workflows, and how many
    # it deletes per transaction.
    retention_interval_seconds: float = 60.0
    retention_batch_size: int = 500
    # While catching up, the loop pauses after each full batch this many times as long as
    # the batch took (0: no pause; 1: the database spends at most half its time on it).
    retention_pause_factor: float = 1.0
    # Bearer token -> namespace. Empty: no authentication, every call in DEFAULT_NAMESPACE.
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
