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


def parse_attribute(text: str) -> tuple[str, str]:
    """A `--attr KEY=VALUE` argument (the coordinator checks the key and value)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"not KEY=VALUE: {text!r}")
    return key, value


def add_filter_arguments(
    parser: argparse.ArgumentParser,
    *,
    statuses: str = "only these statuses",
    since: bool = True,
) -> None:
    """The workflow filter options `workflows list`, `cancel-all`/`resume-all` and `watch`
    share (read back by `filter_keywords`); `statuses` says what --status selects."""
    parser.add_argument(
        "--status",
        type=parse_status,
        nargs="+",
        action="extend",
        metavar="STATUS",
        help=f"{statuses}: " + ", ".join(s.value for s in WorkflowStatus),
    )
    parser.add_argument("--name", help="only workflows with this name")
    parser.add_argument(
        "--attr",
        type=parse_attribute,
        action="append",
        metavar="KEY=VALUE",
        help="only workflows whose search attribute KEY is VALUE (repeat for several: all "
        "must hold)",
    )
    parser.add_argument("--parent", metavar="ID", help="only child workflows of workflow ID")
    parser.add_argument("--queue", metavar="NAME", help="only workflows enqueued on NAME")
    parser.add_argument(
        "--version", metavar="VERSION", help="only workflows of this application version"
    )
    if since:
        parser.add_argument(
            "--since",
            type=parse_since,
            metavar="WHEN",
            help="only workflows created since: an ISO 8601 time (local unless it names a "
            "zone) or a duration ago such as 30m, 1h, 2d",
        )


def filter_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The SDK's filter keywords (`list_workflows`') from `add_filter_arguments` options."""
    keywords: dict[str, Any] = {
        "status": args.status,
        "name": args.name,
        "parent_workflow_id": args.parent,
        "queue_name": args.queue,
        "app_version": args.version,
        "attributes": dict(args.attr or []),
    }
    if "since" in args:
        keywords["created_after"] = args.since
    return keywords
