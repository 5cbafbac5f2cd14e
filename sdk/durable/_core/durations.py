"""Durations as users give them: a number of seconds or a `datetime.timedelta`."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

# What every duration argument of the SDK accepts.
Seconds: TypeAlias = float | timedelta


def seconds(value: Seconds) -> float:
    """`value` in seconds. Range checks are the caller's; a wrong type is a TypeError."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration is a number of seconds or a datetime.timedelta, not {value!r}")
    return float(value)


def optional_seconds(value: Seconds | None) -> float | None:
    return None if value is None else seconds(value)
