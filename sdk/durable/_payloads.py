"""JSON payloads and recorded failures: what Python values and exceptions look like on the wire.

Every payload this SDK writes is JSON, then passed through the process's payload codecs
(`set_codecs`, `durable.configure(codecs=...)`), if any: bytes to bytes, e.g. encryption
or compression. The payload's encoding names the chain: "json" alone, else "json+" and the
codecs' names in the order they were applied ("json+zlib+fernet"). Decoding undoes the
chain from the right. See docs/payload-codecs.md.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from durable.errors import PayloadCodecError, PayloadError, RecordedError
from durable.v1 import coordinator_pb2 as pb

JSON = "json"
# Between the codec names of an encoding: "json+zlib+fernet".
SEPARATOR = "+"
# The coordinator's rule for an encoding (coordinator/validation.py), and a codec's name:
# the same characters but the separator.
_ENCODING = re.compile(r"[a-z0-9][a-z0-9._+/-]{0,63}")
_CODEC_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]*")
# An import path "module:attribute" of the codecs of a process that sets none in code
# (e.g. the `durable` CLI): a sequence of codecs, or a function returning one.
CODECS_ENV = "DURABLE_PAYLOAD_CODECS"


@dataclass(frozen=True)
class RawPayload:
    """A value in an encoding this SDK does not decode, handed over as bytes."""

    encoding: str
    data: bytes


@runtime_checkable
class PayloadCodec(Protocol):
    """Bytes to bytes, applied to every payload after JSON (see `durable.configure`).

    `encoding`: the codec's name in payload encodings, e.g. "fernet": lowercase letters,
    digits and . _ / - (not "+", which separates the names of a chain). `decode` must
    undo `encode`, and raise when it cannot (a wrong key): never return other bytes.
    Both may be called from several threads at once.
    """

    encoding: str

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class _Codecs:
    chain: tuple[PayloadCodec, ...]
    by_name: dict[str, PayloadCodec]
    encoding: str


_NONE = _Codecs((), {}, JSON)
_codecs: _Codecs | None = None  # None: not set yet ($DURABLE_PAYLOAD_CODECS, if set, applies)
_codecs_lock = threading.Lock()


def set_codecs(codecs: Iterable[PayloadCodec]) -> None:
    """Encode every payload this process writes with `codecs`, in order, after JSON (an
    empty sequence: plain JSON), and decode payloads whose encoding names them.

    Process-wide: a workflow's records are read back by whichever run replays it, its
    result by any handle, so the codecs belong to the process, not to one client."""
    chain = tuple(codecs)
    by_name: dict[str, PayloadCodec] = {}
    for codec in chain:
        name = getattr(codec, "encoding", None)
        if not all(callable(getattr(codec, method, None)) for method in ("encode", "decode")):
            raise TypeError(f"{codec!r} is not a payload codec (encoding, encode, decode)")
        if not isinstance(name, str) or not _CODEC_NAME.fullmatch(name):
            raise ValueError(
                f"codec {codec!r}: encoding must be lowercase letters, digits and . _ / -"
                f" (no {SEPARATOR!r}), not {name!r}"
            )
        if name in by_name:
            raise ValueError(f"two codecs are named {name!r}")
        by_name[name] = codec
    encoding = SEPARATOR.join([JSON, *by_name])
    if not _ENCODING.fullmatch(encoding):
        raise ValueError(f"encoding {encoding!r} is longer than 64 characters: shorter names")
    global _codecs
    with _codecs_lock:
        _codecs = _Codecs(chain, by_name, encoding) if chain else _NONE


def codecs() -> tuple[PayloadCodec, ...]:
    """The codecs every payload this process writes goes through, in order."""
    return _current().chain


def _current() -> _Codecs:
    found = _codecs
    if found is None:
        with _codecs_lock:
            found = _codecs
        if found is None:
            set_codecs(_from_env(os.environ.get(CODECS_ENV, "")))
            found = _codecs
    assert found is not None
    return found


def _from_env(path: str) -> Iterable[PayloadCodec]:
    """The codecs $DURABLE_PAYLOAD_CODECS names ("module:attribute"), none when unset."""
    if not path:
        return ()
    module_name, _, attribute = path.partition(":")
    try:
        found: Any = getattr(importlib.import_module(module_name), attribute or "CODECS")
        value = found() if callable(found) else found
        return tuple(value)
    except Exception as exc:
        raise PayloadError(
            f"${CODECS_ENV}={path!r} does not name codecs (module:attribute,"
            f" a sequence of codecs or a function returning one): {exc}"
        ) from exc


def encode(value: Any) -> pb.Payload:
    """`value` as a JSON payload (UTF-8, no NaN or Infinity, readable in any language),
    then through the process's codecs."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}") from exc
    data = text.encode("utf-8")
    current = _current()
    for codec in current.chain:
        try:
            data = codec.encode(data)
        except Exception as exc:
            raise PayloadCodecError(
                f"codec {codec.encoding!r} failed to encode a payload: {_why(exc)}", None
            ) from exc
        if not isinstance(data, bytes):
            raise PayloadCodecError(
                f"codec {codec.encoding!r} returned {type(data).__name__}, not bytes", None
            )
    return pb.Payload(encoding=current.encoding, data=data)


def decode(payload: pb.Payload) -> Any:
    """The value of a payload: JSON, after undoing the codecs its encoding names.

    A RawPayload for an encoding that is not JSON-based (another language's). Raises
    PayloadCodecError (with the RawPayload as `.raw`) for a codec chain this process cannot
    undo: a codec it has not configured, or one that fails (a wrong key).
    """
    encoding = payload.encoding or JSON
    if encoding == JSON:
        try:
            return json.loads(payload.data)
        except ValueError as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from exc
    base, _, rest = encoding.partition(SEPARATOR)
    if base != JSON or not rest:
        return RawPayload(encoding, payload.data)
    data = payload.data
    by_name = _current().by_name
    for name in reversed(rest.split(SEPARATOR)):
        codec = by_name.get(name)
        if codec is None:
            raise PayloadCodecError(
                f"payload encoding {encoding!r} needs codec {name!r}, which this process has"
                " not configured (durable.configure(codecs=[...]) or"
                f" ${CODECS_ENV}); its raw bytes are the error's .raw",
                RawPayload(encoding, payload.data),
            )
        try:
            data = codec.decode(data)
        except Exception as exc:
            raise PayloadCodecError(
                f"codec {name!r} cannot decode this {encoding!r} payload ({_why(exc)}):"
                " a wrong or retired key?",
                RawPayload(encoding, payload.data),
            ) from exc
    try:
        return json.loads(data)
    except ValueError as exc:
        raise PayloadCodecError(
            f"payload encoding {encoding!r}: not JSON once decoded ({exc})",
            RawPayload(encoding, payload.data),
        ) from exc


def decode_or_raw(payload: pb.Payload) -> Any:
    """As `decode`, but a payload this process cannot decode is its RawPayload: for
    showing records (management, the CLI), where a value is not needed to go on."""
    try:
        return decode(payload)
    except PayloadCodecError as exc:
        if isinstance(exc.raw, RawPayload):
            return exc.raw
        raise


def unreadable(error: BaseException) -> bool:
    """Whether `error` says a payload could not be encoded or decoded with this process's
    codecs: not a workflow's own error, but this process's (a missing or wrong key)."""
    return isinstance(error, PayloadCodecError)


def _why(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def roundtrip(value: Any) -> Any:
    """What `value` reads back as after recording, so a first run sees what replays see
    (codecs give back the bytes they were given, so JSON alone decides)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}") from exc
    return json.loads(text)


def failure(exc: BaseException) -> pb.Failure:
    cls = type(exc)
    if isinstance(exc, RecordedError):
        return pb.Failure(type=exc.type, message=exc.message, details=exc.details)
    return pb.Failure(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        details="".join(traceback.format_exception(exc)),
    )


def exception(recorded: pb.Failure) -> Exception:
    """A recorded failure as an exception: its original type when that can be rebuilt.

    Only classes from modules this process has already imported are considered, so a
    record never causes an import.
    """
    module_name, _, qualname = recorded.type.rpartition(".")
    target: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if target is not None else ():
        target = getattr(target, part, None)
    if isinstance(target, type) and issubclass(target, Exception):
        # Rebuilt from the message alone: the type is what `except` clauses match on.
        with contextlib.suppress(Exception):
            rebuilt: Exception = target(recorded.message)
            if str(rebuilt) != recorded.message:
                # A type whose str() is the repr of its argument (KeyError): the message
                # is that repr, so rebuild from the argument it reads back as, for the
                # replay to see the message the first run saw.
                with contextlib.suppress(Exception):
                    message = recorded.message
                    again: Exception = target(ast.literal_eval(message)) if message else target()
                    if str(again) == message:
                        rebuilt = again
            return rebuilt
    return RecordedError(recorded.type, recorded.message, recorded.details)
