"""JSON payloads and recorded failures: what Python values and exceptions look like on the wire."""

from __future__ import annotations

import ast
import contextlib
import json
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from durable.errors import PayloadError, RecordedError
from durable.v1 import coordinator_pb2 as pb

JSON = "json"


@dataclass(frozen=True)
class RawPayload:
    """A value in an encoding this SDK does not decode, handed over as bytes."""

    encoding: str
    data: bytes


def encode(value: Any) -> pb.Payload:
    """`value` as a JSON payload (UTF-8, no NaN or Infinity, readable in any language)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}") from exc
    return pb.Payload(encoding=JSON, data=text.encode("utf-8"))


def decode(payload: pb.Payload) -> Any:
    """The value of a payload; a RawPayload for encodings other than JSON."""
    if payload.encoding in ("", JSON):
        try:
            return json.loads(payload.data)
        except ValueError as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from exc
    return RawPayload(payload.encoding, payload.data)


def roundtrip(value: Any) -> Any:
    """What `value` reads back as after recording, so a first run sees what replays see."""
    return decode(encode(value))


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
