"""Bearer-token authentication: each token belongs to one namespace.

Tokens come as `namespace=token` entries, one per line in a tokens file (blank lines and
`#` comments ignored) or comma-separated in DURABLE_TOKENS. A call's namespace is the one
its `authorization: Bearer <token>` metadata maps to; with no tokens configured, every call
is in the default namespace. Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from coordinator.config import DEFAULT_NAMESPACE
from coordinator.errors import CoordinatorError

NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_BEARER = "bearer "


class Unauthenticated(CoordinatorError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


def parse_tokens(entries: Iterable[str], source: str) -> dict[str, str]:
    """`namespace=token` entries as a token -> namespace map; ValueError names the bad entry
    by position only (never by content, which holds a secret)."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        namespace, sep, token = entry.partition("=")
        namespace, token = namespace.strip(), token.strip()
        if not sep or not token:
            raise ValueError(f"{source} entry {number}: expected namespace=token")
        if not NAMESPACE.fullmatch(namespace):
            raise ValueError(f"{source} entry {number}: namespace must match {NAMESPACE.pattern}")
        if token in tokens and tokens[token] != namespace:
            raise ValueError(f"{source} entry {number}: token already given to another namespace")
        tokens[token] = namespace
    return tokens


class Authenticator:
    """Maps a call's metadata to its namespace, or raises Unauthenticated."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def namespace(self, metadata: Iterable[tuple[str, Any]] | None) -> str:
        if not self._tokens:
            return DEFAULT_NAMESPACE
        presented = None
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                if value[: len(_BEARER)].lower() == _BEARER:
                    presented = value[len(_BEARER) :].strip()
                break
        if presented is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        # Compare against every token in constant time, so timing reveals nothing.
        found = None
        for token, namespace in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = namespace
        if found is None:
            raise Unauthenticated("invalid bearer token")
        return found
