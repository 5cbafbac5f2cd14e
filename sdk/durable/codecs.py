"""Payload codecs to configure with `durable.configure(codecs=[...])` (or
`durable.set_payload_codecs`): every payload the SDK writes is JSON, then each codec's
bytes in turn. See docs/payload-codecs.md.

    from durable.codecs import FernetCodec, ZlibCodec

    durable.configure(codecs=[ZlibCodec(), FernetCodec(os.environ["PAYLOAD_KEY"])])
    # payloads are written as encoding "json+zlib+fernet"

`FernetCodec` needs the `cryptography` package: `pip install 'durable-sdk[crypto]'` (or
`durable-coordinator[crypto]`); it is imported only when a FernetCodec is made.
"""

from __future__ import annotations

import zlib
from typing import Any

from durable._payloads import PayloadCodec

__all__ = ["FernetCodec", "PayloadCodec", "ZlibCodec"]


class FernetCodec:
    """Encrypt and authenticate payloads with Fernet (AES-128-CBC and HMAC-SHA256, from
    the `cryptography` package), under encoding name "fernet".

    `keys`: one or more Fernet keys (`FernetCodec.generate_key()`, 32 url-safe base64
    bytes). The first encrypts; every one decrypts. To rotate a key, deploy the new key
    first in the list and keep the old ones after it for as long as records written under
    them may be read (workflows still running or kept for inspection); then drop them.
    Decrypting with none of the keys fails with PayloadCodecError, never with other bytes.
    """

    encoding = "fernet"

    def __init__(self, *keys: bytes | str) -> None:
        if not keys:
            raise ValueError("FernetCodec needs at least one key (FernetCodec.generate_key())")
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "durable.codecs.FernetCodec needs the cryptography package:"
                " pip install 'durable-sdk[crypto]'"
            ) from exc
        try:
            self._fernet: Any = MultiFernet([Fernet(key) for key in keys])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a Fernet key (32 url-safe base64 bytes): {exc}") from None

    @staticmethod
    def generate_key() -> bytes:
        """A new random key."""
        from cryptography.fernet import Fernet

        key: bytes = Fernet.generate_key()
        return key

    def encode(self, data: bytes) -> bytes:
        token: bytes = self._fernet.encrypt(data)
        return token

    def decode(self, data: bytes) -> bytes:
        # Raises cryptography.fernet.InvalidToken for a key not in the list or altered bytes.
        plain: bytes = self._fernet.decrypt(data)
        return plain

    def __repr__(self) -> str:
        return "FernetCodec(<keys>)"


class ZlibCodec:
    """Compress payloads with zlib (standard library), under encoding name "zlib". Put it
    before an encrypting codec: encrypted bytes do not compress."""

    encoding = "zlib"

    def __init__(self, level: int = 6) -> None:
        if not -1 <= level <= 9:
            raise ValueError(f"a zlib level is -1 to 9, not {level!r}")
        self.level = level

    def encode(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decode(self, data: bytes) -> bytes:
        return zlib.decompress(data)

    def __repr__(self) -> str:
        return f"ZlibCodec(level={self.level})"
