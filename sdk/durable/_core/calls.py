"""Calls to the coordinator, transport aside: deadlines, which failures are retried, and
what a failed call is raised as. Both clients (`durable.Client`, `durable.aio.AsyncClient`)
follow these rules; only how they wait differs."""

from __future__ import annotations

import os
import time

import grpc

from durable._failures import CallFailed
from durable._retry import Backoff

# Every unary call gets this deadline unless it waits on purpose.
CALL_TIMEOUT_SECONDS = 30.0
# Extra transport deadline on calls that wait server-side, beyond the wait itself.
WAIT_MARGIN_SECONDS = 10.0

# What is retried: writes (all idempotent) and waits when the coordinator is unavailable;
# plain reads also when their deadline passed.
RETRY_UNAVAILABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
RETRY_READ = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# $DURABLE_SESSION values that turn the Session stream off.
_SESSION_OFF = frozenset({"0", "false", "no", "off"})


def use_session(session: bool | None) -> bool:
    """Whether a client sends its hot-path calls over a Session stream: `session`, or by
    default unless $DURABLE_SESSION turns it off."""
    if session is not None:
        return session
    return os.environ.get("DURABLE_SESSION", "1").strip().lower() not in _SESSION_OFF


def retry_pause(
    error: grpc.RpcError | CallFailed, retry_on: frozenset[grpc.StatusCode], backoff: Backoff
) -> float:
    """The pause before retrying an attempt that failed with `error` (a grpc.RpcError or a
    CallFailed). Raises the SDK's typed error instead when its code is not in `retry_on`
    or the retry budget is spent."""
    failure = error if isinstance(error, CallFailed) else CallFailed.from_rpc_error(error)
    delay = backoff.next_delay() if failure.code in retry_on else None
    if delay is None:
        raise failure.typed() from None
    return delay


class Deadline:
    """A wait's end, fixed when the wait starts: every retry waits only for what is left."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())
