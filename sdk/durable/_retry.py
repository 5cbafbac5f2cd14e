"""Retrying calls that failed because the coordinator (or its database) was briefly away."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How a `Client` retries a call that failed with UNAVAILABLE (the coordinator is
    restarting, or its database is briefly unreachable), and a plain read that ran out of
    time (DEADLINE_EXCEEDED).

    Retrying is safe: every write is idempotent by (workflow ID, step ID) or workflow ID,
    and the SDK gives every workflow it starts an ID. A wait (`get_event`, `watch_event`,
    `WorkflowHandle.result`) is retried with what is left of its timeout, and a
    `watch_event` resumes after the last value it yielded, so none is lost or repeated.

    Pauses grow from `initial_backoff_seconds` by `multiplier` up to `max_backoff_seconds`,
    each drawn at random between half and all of that (jitter). A call gives up, raising
    the last error, once it has been retrying for `total_seconds`; for a stream the budget
    starts again whenever a message arrives. `RetryPolicy(total_seconds=0)` never retries.
    """

    total_seconds: float = 30.0
    initial_backoff_seconds: float = 0.1
    max_backoff_seconds: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.total_seconds < 0:
            raise ValueError("total_seconds must not be negative")
        if not 0 < self.initial_backoff_seconds <= self.max_backoff_seconds:
            raise ValueError("need 0 < initial_backoff_seconds <= max_backoff_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")


class Backoff:
    """One call's retry state under a policy. Says how long to pause; the face pauses."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._give_up_at: float | None = None
        self._delay = policy.initial_backoff_seconds

    def reset(self) -> None:
        """The call made progress: the next failure starts a fresh budget."""
        self._give_up_at = None
        self._delay = self._policy.initial_backoff_seconds

    def next_delay(self) -> float | None:
        """The pause before the next attempt; None if the budget is spent."""
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + self._policy.total_seconds
        left = self._give_up_at - now
        if left <= 0:
            return None
        delay = min(left, random.uniform(self._delay / 2, self._delay))
        self._delay = min(self._delay * self._policy.multiplier, self._policy.max_backoff_seconds)
        return delay
