"""`durable`'s argument parser and the types of its arguments: times, statuses, numbers
and JSON values, each rejected with a one-line error."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from durable._core.specs import WorkflowStatus
from durable.cli.console import EXIT_ERROR

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


class Parser(argparse.ArgumentParser):
    """`durable`'s parser; its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        """Bad arguments: one line on stderr, exit status 2."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A time: ISO 8601 (local time when it names no zone), or a duration ago such as
    "90s", "30m", "1h", "2d", "1w"."""
    spec = text.strip()
    match = _RELATIVE.fullmatch(spec.lower())
    if match:
        ago = timedelta(seconds=float(match[1]) * _UNITS[match[2]])
        return (now or datetime.now(timezone.utc)) - ago
    if spec[-1:] in ("Z", "z"):
        spec = spec[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    try:
        value = datetime.fromisoformat(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time nor a duration like 30m, 1h or 2d"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


def parse_status(text: str) -> WorkflowStatus:
    try:
        return WorkflowStatus(text.upper())
    except ValueError:
        known = ", ".join(status.value for status in WorkflowStatus)
        raise argparse.ArgumentTypeError(f"unknown status {text!r} (one of {known})") from None


def non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value

    return parse


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {minimum} or more")
        return value

    return parse
