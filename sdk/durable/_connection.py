"""Opening the gRPC channel: plaintext, TLS, and bearer tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import grpc.experimental

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RECONNECT_BACKOFF_MAX_MS = 2000


@dataclass(frozen=True)
class TLS:
    """TLS settings for reaching a coordinator that serves TLS.

    `ca_cert`: PEM roots to verify the server with (None: the system's roots).
    `client_cert` and `client_key`: PEM, for a coordinator that requires client
    certificates (mutual TLS). `server_name`: the name to verify the server's
    certificate against, when it differs from the target's host.
    """

    ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca_cert: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TLS:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca_cert), read(client_cert), read(client_key), server_name)

    @classmethod
    def from_env(cls) -> TLS | None:
        """TLS from DURABLE_TLS_CA / DURABLE_TLS_CLIENT_CERT / DURABLE_TLS_CLIENT_KEY /
        DURABLE_TLS_SERVER_NAME; None when DURABLE_TLS_CA is unset."""
        ca = os.environ.get("DURABLE_TLS_CA")
        if not ca:
            return None
        return cls.from_files(
            ca,
            os.environ.get("DURABLE_TLS_CLIENT_CERT") or None,
            os.environ.get("DURABLE_TLS_CLIENT_KEY") or None,
            os.environ.get("DURABLE_TLS_SERVER_NAME") or None,
        )


def _options() -> list[tuple[str, str | int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # While the coordinator is down gRPC waits longer and longer between connection
        # attempts (up to 2 minutes by default); cap it so a retrying call (RetryPolicy)
        # notices within seconds that the coordinator is back.
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]


def _credentials(
    target: str, token: str | None, tls: TLS | None, options: list[tuple[str, str | int]]
) -> grpc.ChannelCredentials | None:
    """The channel's credentials (None: plaintext). A token is sent as `authorization:
    Bearer <token>`: over TLS, or in plaintext only to a local target (loopback or unix
    socket), which gRPC enforces."""
    if tls is not None:
        credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.client_key, tls.client_cert)
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
    elif token is not None:
        local = (
            grpc.LocalConnectionType.UDS
            if target.startswith("unix:")
            else grpc.LocalConnectionType.LOCAL_TCP
        )
        credentials = grpc.local_channel_credentials(local)
    else:
        return None
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return credentials


def open_channel(target: str, token: str | None, tls: TLS | None) -> grpc.Channel:
    """A channel to `target`, with TLS and a bearer token as `_credentials` says."""
    options = _options()
    # GetEvent streams are read by the thread that iterates them, not handed over from
    # gRPC's channel thread: one thread wake-up less per value, which on the benchmark
    # box took event delivery from 2.8-3.3 ms to 2.2-2.4 ms (bench/README.md).
    options.append((grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1))
    credentials = _credentials(target, token, tls, options)
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def open_aio_channel(target: str, token: str | None, tls: TLS | None) -> grpc.aio.Channel:
    """An asyncio channel to `target`, bound to the running event loop; as `open_channel`."""
    options = _options()
    credentials = _credentials(target, token, tls, options)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)
