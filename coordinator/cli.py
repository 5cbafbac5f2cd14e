"""Command line: flags and DURABLE_* environment variables become a Config, then serve()."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from coordinator import logs, metrics, tracing
from coordinator.auth import parse_tokens
from coordinator.config import Config
from coordinator.embedded import start_embedded_postgres
from coordinator.operations.retention import MIN_RETENTION_SECONDS, parse_duration
from coordinator.server import serve
from coordinator.store.db import DatabaseNotReady

_DEFAULTS = Config()


def _env(name: str, default: object) -> str:
    return os.environ.get(name, str(default))


def _retention_duration(text: str) -> float | None:
    """--retention: 'off', or a duration of at least a minute (argparse reports the error)."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < MIN_RETENTION_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is shorter than the minimum, 1m")
    return seconds


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator",
        description="Durable workflow coordinator: a gRPC server keeping state in Postgres. "
        "Every flag can also be set by the environment variable shown.",
    )
    parser.add_argument(
        "--listen",
        default=_env("DURABLE_LISTEN", _DEFAULTS.listen),
        help="host:port, or unix:/path/to.sock, to serve gRPC on (env DURABLE_LISTEN; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        help="Postgres URL (env DATABASE_URL); several hosts for failover: "
        "postgresql://u@host1:5432,host2:5432/db?target_session_attrs=read-write "
        "(docs/operations.md); without one, an embedded Postgres is started",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(_env("DURABLE_DATA_DIR", _DEFAULTS.data_dir)),
        help="embedded Postgres data directory, kept between runs "
        "(env DURABLE_DATA_DIR; default %(default)s)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=int(_env("DURABLE_POOL_SIZE", _DEFAULTS.pool_max_size)),
        help="maximum database connections (env DURABLE_POOL_SIZE; default %(default)s)",
    )
    parser.add_argument(
        "--database-wait",
        type=float,
        default=float(_env("DURABLE_DATABASE_WAIT", _DEFAULTS.database_wait_seconds)),
        help="seconds to wait at start-up for a read-write database (none reachable, or only "
        "a standby) before exiting with an error; health is NOT_SERVING meanwhile "
        "(env DURABLE_DATABASE_WAIT; default %(default)s)",
    )
    parser.add_argument(
        "--database-call-timeout",
        type=float,
        default=float(
            _env("DURABLE_DATABASE_CALL_TIMEOUT", _DEFAULTS.database_call_timeout_seconds)
        ),
        help="seconds a call's database work may run when the call has no deadline of its "
        "own (Session stream calls, background loops) before it is cancelled; 0: no bound "
        "(env DURABLE_DATABASE_CALL_TIMEOUT; default %(default)s)",
    )
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=_env("DURABLE_GROUP_COMMIT", "true").lower() in ("1", "true", "yes"),
        help="write RunStep and SetEvent requests that arrive while earlier ones are being "
        "committed together, in one transaction (env DURABLE_GROUP_COMMIT; default on)",
    )
    parser.add_argument(
        "--group-commit-max-batch",
        type=int,
        default=int(_env("DURABLE_GROUP_COMMIT_MAX_BATCH", _DEFAULTS.group_commit_max_batch)),
        help="most requests in one group-commit transaction "
        "(env DURABLE_GROUP_COMMIT_MAX_BATCH; default %(default)s)",
    )
    parser.add_argument(
        "--max-payload-bytes",
        type=int,
        default=int(_env("DURABLE_MAX_PAYLOAD_BYTES", _DEFAULTS.max_payload_bytes)),
        help="largest accepted payload (env DURABLE_MAX_PAYLOAD_BYTES; default %(default)s)",
    )
    parser.add_argument(
        "--max-wait-seconds",
        type=float,
        default=float(_env("DURABLE_MAX_WAIT_SECONDS", _DEFAULTS.max_wait_seconds)),
        help="longest wait a client may ask for (env DURABLE_MAX_WAIT_SECONDS; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(_env("DURABLE_SHUTDOWN_GRACE", _DEFAULTS.shutdown_grace_seconds)),
        help="seconds open calls get to finish on SIGTERM (env DURABLE_SHUTDOWN_GRACE; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-recovery-attempts",
        type=int,
        default=int(_env("DURABLE_MAX_RECOVERY_ATTEMPTS", _DEFAULTS.max_recovery_attempts)),
        help="recoveries after worker deaths before a workflow goes to DEAD_LETTER "
        "(env DURABLE_MAX_RECOVERY_ATTEMPTS; default %(default)s)",
    )
    parser.add_argument(
        "--retention",
        type=_retention_duration,
        default=os.environ.get("DURABLE_RETENTION") or "off",  # a string: argparse converts it
        metavar="DURATION",
        help="delete finished workflows this long after their last change (30d, 12h, 90m, "
        "3600s or seconds; at least 1m), in namespaces without a policy of their own "
        "(SetRetention); 'off': keep them (env DURABLE_RETENTION; default off)",
    )
    parser.add_argument(
        "--retention-interval",
        type=float,
        default=float(_env("DURABLE_RETENTION_INTERVAL", _DEFAULTS.retention_interval_seconds)),
        help="seconds between clean-up passes for expired workflows "
        "(env DURABLE_RETENTION_INTERVAL; default %(default)s)",
    )
    parser.add_argument(
        "--retention-batch-size",
        type=int,
        default=int(_env("DURABLE_RETENTION_BATCH_SIZE", _DEFAULTS.retention_batch_size)),
        help="expired workflows deleted per transaction "
        "(env DURABLE_RETENTION_BATCH_SIZE; default %(default)s)",
    )
    parser.add_argument(
        "--retention-pause-factor",
        type=float,
        default=float(_env("DURABLE_RETENTION_PAUSE_FACTOR", _DEFAULTS.retention_pause_factor)),
        help="while deleting a backlog, pause after each full batch this many times as long "
        "as the batch took; 0: full speed (env DURABLE_RETENTION_PAUSE_FACTOR; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("DURABLE_LOG_LEVEL", _DEFAULTS.log_level),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (env DURABLE_LOG_LEVEL; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default=_env("DURABLE_LOG_FORMAT", _DEFAULTS.log_format),
        choices=["text", "json"],
        help="log format: text, or json (one object per line) "
        "(env DURABLE_LOG_FORMAT; default %(default)s)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=os.environ.get("DURABLE_METRICS_LISTEN") or None,
        help="host:port for a Prometheus /metrics endpoint (env DURABLE_METRICS_LISTEN; "
        "default: off)",
    )
    parser.add_argument(
        "--otel",
        action=argparse.BooleanOptionalAction,
        default=_env("DURABLE_OTEL", "false").lower() in ("1", "true", "yes"),
        help="trace RPCs with OpenTelemetry, exporting per the standard OTEL_* variables "
        "(env DURABLE_OTEL; default off; needs the 'otel' extra)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=os.environ.get("DURABLE_TLS_CERT") or None,
        help="server certificate chain, PEM (env DURABLE_TLS_CERT); with --tls-key, serve TLS",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=os.environ.get("DURABLE_TLS_KEY") or None,
        help="server private key, PEM (env DURABLE_TLS_KEY)",
    )
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        default=os.environ.get("DURABLE_TLS_CLIENT_CA") or None,
        help="CA bundle, PEM: require client certificates it signed (mutual TLS) "
        "(env DURABLE_TLS_CLIENT_CA)",
    )
    parser.add_argument(
        "--tokens-file",
        type=Path,
        default=os.environ.get("DURABLE_TOKENS_FILE") or None,
        help="file of 'namespace=token' lines: require 'authorization: Bearer <token>' and "
        "confine each token to its namespace (env DURABLE_TOKENS_FILE; DURABLE_TOKENS may "
        "hold the same entries comma-separated)",
    )
    args = parser.parse_args(argv)
    if args.pool_size < 1:
        parser.error("--pool-size must be at least 1")
    if args.database_call_timeout < 0:
        parser.error("--database-call-timeout must not be negative")
    if args.database_wait < 0:
        parser.error("--database-wait must not be negative")
    if args.group_commit_max_batch < 1:
        parser.error("--group-commit-max-batch must be at least 1")
    if args.max_payload_bytes < 1:
        parser.error("--max-payload-bytes must be at least 1")
    if args.max_recovery_attempts < 0:
        parser.error("--max-recovery-attempts must not be negative")
    if args.max_wait_seconds <= 0:
        parser.error("--max-wait-seconds must be positive")
    if args.retention_interval <= 0:
        parser.error("--retention-interval must be positive")
    if args.retention_pause_factor < 0:
        parser.error("--retention-pause-factor must not be negative")
    if args.retention_batch_size < 1:
        parser.error("--retention-batch-size must be at least 1")
    if args.metrics_listen is not None:
        try:
            metrics.parse_listen(args.metrics_listen)
        except ValueError as exc:
            parser.error(str(exc))
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    try:
        tokens = parse_tokens(os.environ.get("DURABLE_TOKENS", "").split(","), "DURABLE_TOKENS")
        if args.tokens_file is not None:
            lines = args.tokens_file.read_text(encoding="utf-8").splitlines()
            tokens.update(parse_tokens(lines, str(args.tokens_file)))
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    return Config(
        listen=args.listen,
        database_url=args.database_url,
        data_dir=args.data_dir,
        pool_min_size=min(_DEFAULTS.pool_min_size, args.pool_size),
        pool_max_size=args.pool_size,
        database_wait_seconds=args.database_wait,
        database_call_timeout_seconds=args.database_call_timeout,
        group_commit=args.group_commit,
        group_commit_max_batch=args.group_commit_max_batch,
        max_payload_bytes=args.max_payload_bytes,
        max_wait_seconds=args.max_wait_seconds,
        shutdown_grace_seconds=args.shutdown_grace,
        log_level=args.log_level,
        max_recovery_attempts=args.max_recovery_attempts,
        log_format=args.log_format,
        metrics_listen=args.metrics_listen,
        otel=args.otel,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        retention_seconds=args.retention,
        retention_interval_seconds=args.retention_interval,
        retention_batch_size=args.retention_batch_size,
        retention_pause_factor=args.retention_pause_factor,
        tokens=tokens,
    )


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    logs.configure(config.log_level, config.log_format)
    # pgserver narrates every start-up step at INFO; its warnings still show.
    logging.getLogger("pgserver").setLevel(
        max(logging.WARNING, logging.getLevelName(config.log_level))
    )
    try:
        tracing.configure(config.otel)
    except tracing.TracingUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    database_url = config.database_url or start_embedded_postgres(config.data_dir).url
    try:
        asyncio.run(serve(config, database_url))
    except DatabaseNotReady as exc:
        # Said plainly, without a traceback: an operator's problem, not a bug.
        raise SystemExit(f"error: {exc}") from None
