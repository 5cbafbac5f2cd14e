"""TLS for the gRPC port: server certificate, and optionally required client certificates."""

from __future__ import annotations

import grpc

from coordinator.config import Config


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """Credentials for the configured certificate and key, or None to serve plaintext.

    With a client CA, a client must present a certificate that CA signed (mutual TLS).
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
