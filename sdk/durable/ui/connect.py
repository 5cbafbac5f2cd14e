"""The dashboard's own async client, made from the `durable` command line's connection
options (--coordinator, --token, --tls-*, --retry-seconds and their DURABLE_* variables)."""

from __future__ import annotations

import argparse

from durable._aio.client import AsyncClient
from durable._connection import TLS
from durable._retry import RetryPolicy

# A page waits at most this long for an unavailable coordinator before it shows the
# banner (and reconnects from the browser): a person is looking at it.
MAX_RETRY_SECONDS = 3.0


def dashboard_client(
    target: str | None,
    *,
    token: str | None = None,
    tls: TLS | None = None,
    retry_seconds: float = MAX_RETRY_SECONDS,
) -> AsyncClient:
    """An AsyncClient as the dashboard uses one: it retries an unavailable coordinator
    for at most MAX_RETRY_SECONDS before the page says so."""
    return AsyncClient(
        target,
        token=token,
        tls=tls,
        retry=RetryPolicy(total_seconds=min(retry_seconds, MAX_RETRY_SECONDS)),
        session=False,  # the dashboard makes no hot-path calls
    )


def async_client(args: argparse.Namespace) -> AsyncClient:
    """The dashboard's client for the coordinator the command line names. Raises OSError
    when a TLS file cannot be read. Without --tls-* options, DURABLE_TLS_* apply, as in
    the CLI."""
    tls = None
    if args.tls_ca or args.tls_client_cert or args.tls_client_key or args.tls_server_name:
        tls = TLS.from_files(
            args.tls_ca, args.tls_client_cert, args.tls_client_key, args.tls_server_name
        )
    retry_seconds = getattr(args, "retry_seconds", MAX_RETRY_SECONDS)
    return dashboard_client(
        args.coordinator, token=args.token, tls=tls, retry_seconds=retry_seconds
    )
