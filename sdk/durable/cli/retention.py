"""`durable retention get/set`: the namespace's retention of finished workflows."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from durable import _operations
from durable._client import Client
from durable._operations import RetentionPolicy
from durable.cli.args import Parser
from durable.cli.console import EXIT_OK, print_json, print_line

_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '3600s', '2w', or bare seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h, 90m or 3600s")
    return timedelta(seconds=float(match[1]) * dict(_UNITS)[match[2] or "s"])


def duration_text(value: timedelta) -> str:
    """The largest unit that states `value` exactly: 30d, 36h, 90m, 61s."""
    seconds = value.total_seconds()
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `retention` and its commands to `durable`'s subcommands."""
    retention = groups.add_parser(
        "retention", help="show or set how long finished workflows are kept"
    )
    commands = retention.add_subparsers(dest="command", metavar="COMMAND", required=True)
    get = commands.add_parser(
        "get",
        help="show the namespace's retention policy",
        description="Show how long the namespace's finished workflows are kept after their "
        "last change, and whether that is its own policy or the coordinator's --retention.",
    )
    get.set_defaults(run=_get)
    setter = commands.add_parser(
        "set",
        help="set the namespace's retention (30d, 12h, 90m; at least 1m), or --clear it",
        description="Delete the namespace's finished workflows (SUCCESS, ERROR, CANCELLED, "
        "DEAD_LETTER) this long after their last change, with their steps, events and "
        "messages; every coordinator's clean-up loop does it in small batches. Unfinished "
        "workflows are never deleted. --clear removes the namespace's policy (the "
        "coordinator's --retention default, if any, applies again).",
    )
    which = setter.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "duration",
        nargs="?",
        type=parse_duration,
        metavar="DURATION",
        help="e.g. 30d, 12h, 90m, 3600s (at least 1m)",
    )
    which.add_argument("--clear", action="store_true", help="remove the namespace's policy")
    setter.set_defaults(run=_set)
    for command in (get, setter):
        command.add_argument("--json", action="store_true", help="print JSON")


def _show(args: argparse.Namespace, policy: RetentionPolicy) -> None:
    if args.json:
        after = policy.finished_after
        print_json(
            {
                "finished_after_seconds": None if after is None else after.total_seconds(),
                "from_config": policy.from_config,
            }
        )
    elif policy.finished_after is None:
        print_line("none: finished workflows are kept forever")
    else:
        source = "coordinator default (--retention)" if policy.from_config else "namespace"
        print_line(
            f"finished workflows are deleted {duration_text(policy.finished_after)} after "
            f"their last change ({source})"
        )


def _get(args: argparse.Namespace, client: Client) -> int:
    _show(args, _operations.get_retention(client=client))
    return EXIT_OK


def _set(args: argparse.Namespace, client: Client) -> int:
    _show(args, _operations.set_retention(None if args.clear else args.duration, client=client))
    return EXIT_OK
