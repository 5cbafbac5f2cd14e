"""Retrying a step whose function raised: how often, after which pauses, on which errors.

(Not to be confused with `RetryPolicy`, which retries *calls to the coordinator*.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class StepRetry:
    """How a step is retried when its function raises, e.g.
    `@durable.step(retry=durable.StepRetry(max_attempts=5))`.

    A step runs up to `max_attempts` times in all. After a failed attempt that will be
    retried, the SDK records the attempt (its error and times, listed by `list_steps`)
    and pauses before the next one: the n-th pause is
    `min(initial_backoff_seconds * multiplier ** (n - 1), max_backoff_seconds)` minus a
    random fraction of up to `jitter` of it, so a pause never exceeds
    `max_backoff_seconds` and is at least `1 - jitter` of the nominal delay. The outcome
    of the last attempt (a success, or the error that ended the retries) is the step's
    recorded outcome, with the number of attempts taken.

    Only exceptions that are instances of a class in `retry_on` (which must be `Exception`
    subclasses) are retried; any other error is recorded at once. A step replayed from
    its record never runs, so it is never retried. A worker that dies between attempts
    starts the step's attempts over when its workflow is recovered.
    """

    max_attempts: int = 3
    initial_backoff_seconds: float = 1.0
    multiplier: float = 2.0
    max_backoff_seconds: float = 60.0
    jitter: float = 0.5
    retry_on: tuple[type[Exception], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.initial_backoff_seconds <= self.max_backoff_seconds:
            raise ValueError("need 0 <= initial_backoff_seconds <= max_backoff_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(cls, type) and issubclass(cls, Exception) for cls in self.retry_on
        ):
            raise TypeError("retry_on must be a tuple of Exception subclasses")

    def retries(self, error: Exception, attempt: int) -> bool:
        """Whether attempt number `attempt` (from 1), which raised `error`, is retried."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def nominal_delay(self, attempt: int) -> float:
        """The pause after failed attempt `attempt` (from 1), before jitter."""
        delay = self.initial_backoff_seconds
        for _ in range(attempt - 1):
            delay = min(delay * self.multiplier, self.max_backoff_seconds)
        return delay

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt `attempt`: the nominal delay less up to `jitter`
        of it, at random."""
        nominal = self.nominal_delay(attempt)
        return nominal - nominal * self.jitter * random.random()
