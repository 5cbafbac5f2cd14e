"""Checks at the edge: every request field is validated here before it reaches the store.

Each function returns the clean value or raises InvalidArgument naming the field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import NoReturn

from google.protobuf import duration_pb2, timestamp_pb2

from coordinator.errors import InvalidArgument
from coordinator.store.queues import QueueConfig
from coordinator.store.records import Failure, Payload
from durable.v1 import coordinator_pb2 as pb

MAX_NAME_CHARS = 256
MAX_ERROR_TEXT_BYTES = 64 * 1024
DEFAULT_WAIT_SECONDS = 60.0
MAX_STEP_ID = 2**31 - 1

_WORKFLOW_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,256}")
_ENCODING = re.compile(r"[a-z0-9][a-z0-9._+/-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
JSON_ENCODING = "json"


def workflow_id(value: str, field: str = "workflow_id") -> str:
    if not value:
        raise InvalidArgument(field, "required")
    if not _WORKFLOW_ID.fullmatch(value):
        raise InvalidArgument(
            field, "must be 1-256 characters from letters, digits and . _ : @ / + = -"
        )
    return value


def name(value: str, field: str) -> str:
    """A workflow name, step name or event key: 1-256 characters, no control characters."""
    if not value:
        raise InvalidArgument(field, "required")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(field, f"longer than {MAX_NAME_CHARS} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "contains control characters")
    return value


def step_id(value: int, field: str = "step_id") -> int:
    if value <= 0:
        raise InvalidArgument(field, "must be 1 or greater (steps are numbered from 1)")
    return value


def _reject_constant(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def payload(message: pb.Payload, field: str, max_bytes: int) -> Payload:
    """A payload; an empty encoding means JSON, and JSON must parse (strict RFC 8259)."""
    encoding = message.encoding or JSON_ENCODING
    if not _ENCODING.fullmatch(encoding):
        raise InvalidArgument(f"{field}.encoding", "must match [a-z0-9][a-z0-9._+/-]{0,63}")
    data = message.data
    if len(data) > max_bytes:
        raise InvalidArgument(f"{field}.data", f"{len(data)} bytes is over the {max_bytes} limit")
    if encoding == JSON_ENCODING:
        try:
            # NaN and Infinity are Python extensions other languages' parsers reject.
            json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgument(f"{field}.data", f"not valid UTF-8 JSON: {exc}") from None
        except RecursionError:
            # Arrays or objects nested deeper than Python's recursion limit (about 1000).
            raise InvalidArgument(f"{field}.data", "JSON nested too deeply") from None
    return Payload(encoding, data)


def _text(value: str, field: str, max_bytes: int) -> str:
    if "\x00" in value:
        raise InvalidArgument(field, "contains a NUL character")
    if len(value.encode("utf-8")) > max_bytes:
        raise InvalidArgument(field, f"longer than {max_bytes} bytes")
    return value


def failure(message: pb.Failure, field: str, max_bytes: int) -> Failure:
    return Failure(
        type=name(message.type, f"{field}.type"),
        message=_text(message.message, f"{field}.message", MAX_ERROR_TEXT_BYTES),
        details=_text(message.details, f"{field}.details", max_bytes),
    )


def outcome(
    which: str | None, output: pb.Payload, error: pb.Failure, field: str, max_bytes: int
) -> Payload | Failure:
    """The oneof `output` | `error` of a step or workflow result; exactly one is required."""
    if which == "output":
        return payload(output, "output", max_bytes)
    if which == "error":
        return failure(error, "error", max_bytes)
    raise InvalidArgument(field, "required: set output or error")


def timeout(present: bool, value: duration_pb2.Duration, field: str, max_seconds: float) -> float:
    """A wait in seconds: absent means the default, zero means look once."""
    if not present:
        return min(DEFAULT_WAIT_SECONDS, max_seconds)
    if not -315_576_000_000 <= value.seconds <= 315_576_000_000 or abs(value.nanos) >= 10**9:
        raise InvalidArgument(field, "not a valid Duration")
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        raise InvalidArgument(field, "not a valid Duration (seconds and nanos differ in sign)")
    seconds = value.seconds + value.nanos / 1e9
    if seconds < 0:
        raise InvalidArgument(field, "must not be negative")
    if seconds > max_seconds:
        raise InvalidArgument(field, f"must be at most {max_seconds:g} seconds")
    return seconds


def executor_id(value: str, field: str = "executor_id") -> str:
    """An optional worker session ID: empty, or shaped like a workflow ID."""
    return workflow_id(value, field) if value else ""


def topic(value: str, field: str = "topic") -> str:
    """A message topic: 0-256 characters (empty: the default topic), no control characters."""
    return name(value, field) if value else ""


def step_ref(message: pb.StepRef, field: str) -> tuple[str, int, str]:
    """A running workflow's step (workflow_id, step_id, executor_id), e.g. a `caller`."""
    return (
        workflow_id(message.workflow_id, f"{field}.workflow_id"),
        step_id(message.step_id, f"{field}.step_id"),
        executor_id(message.executor_id, f"{field}.executor_id"),
    )


def duration(
    present: bool,
    value: duration_pb2.Duration,
    field: str,
    *,
    default: float,
    minimum: float,
    maximum: float,
) -> float:
    """A duration in seconds within [minimum, maximum]; absent means `default`."""
    if not present:
        return default
    seconds = timeout(True, value, field, maximum)
    if seconds < minimum:
        raise InvalidArgument(field, f"must be at least {minimum:g} seconds")
    return seconds


def timestamp(present: bool, value: timestamp_pb2.Timestamp, field: str) -> datetime | None:
    if not present:
        return None
    if not 0 <= value.nanos < 10**9 or not -62_135_596_800 <= value.seconds <= 253_402_300_799:
        raise InvalidArgument(field, "not a valid Timestamp")
    return value.ToDatetime(tzinfo=timezone.utc)


MAX_RATE_PERIOD_SECONDS = 24 * 3600.0


def queue_config(message: pb.QueueConfig) -> QueueConfig:
    """A queue's limits: zero means none; a rate period exactly with a rate limit."""
    queue = name(message.name, "queue.name")
    for field in ("concurrency", "worker_concurrency", "rate_limit"):
        if getattr(message, field) < 0:
            raise InvalidArgument(f"queue.{field}", "must not be negative (0: no limit)")
    period = None
    if message.rate_limit > 0:
        if not message.HasField("rate_period"):
            raise InvalidArgument("queue.rate_period", "required with rate_limit")
        seconds = duration(
            True,
            message.rate_period,
            "queue.rate_period",
            default=0.0,
            minimum=0.001,
            maximum=MAX_RATE_PERIOD_SECONDS,
        )
        period = timedelta(seconds=seconds)
    elif message.HasField("rate_period"):
        raise InvalidArgument("queue.rate_period", "only with a rate_limit above 0")
    return QueueConfig(
        queue,
        concurrency=message.concurrency or None,
        worker_concurrency=message.worker_concurrency or None,
        rate_limit=message.rate_limit or None,
        rate_period=period,
        limits_per_partition=message.limits_per_partition,
    )
