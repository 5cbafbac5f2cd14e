"""`durable events get/watch`: read a workflow's event, or follow its values until the
workflow finishes."""

from __future__ import annotations

import argparse
import sys
from datetime import timezone

from durable import _management, _payloads
from durable._client import Client
from durable.cli.args import Parser, non_negative
from durable.cli.console import EXIT_NOT_FOUND, EXIT_OK, note, print_json, print_line
from durable.cli.formatting import EventPrinter, json_time, plain, to_json

DEFAULT_GET_TIMEOUT = 60.0
DEFAULT_WATCH_TIMEOUT = 3600.0


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `events` and its commands to `durable`'s subcommands."""
    events = groups.add_parser("events", help="read or watch a workflow's events")
    event_commands = events.add_subparsers(dest="command", metavar="COMMAND", required=True)
    get = event_commands.add_parser(
        "get", help="print an event's value (JSON), waiting for it if it is not set yet"
    )
    watch = event_commands.add_parser(
        "watch",
        help="print an event's values as they change, until the workflow finishes",
        description="Print an event's current value and every later one until the workflow "
        "finishes. A number from 0 to 100 shows as a progress bar.",
    )
    for command, default in ((get, DEFAULT_GET_TIMEOUT), (watch, DEFAULT_WATCH_TIMEOUT)):
        command.add_argument("workflow_id", metavar="ID")
        command.add_argument("key", metavar="KEY")
        command.add_argument(
            "--timeout",
            type=non_negative(float),
            default=default,
            metavar="SECONDS",
            help=f"how long to wait (default: {default:g})",
        )
    get.set_defaults(run=_get)
    watch.set_defaults(run=_watch)

    for command in (get, watch):
        command.add_argument("--json", action="store_true", help="print JSON")


def _get(args: argparse.Namespace, client: Client) -> int:
    for message in client.get_event(args.workflow_id, args.key, args.timeout, follow=False):
        outcome = message.WhichOneof("outcome")
        if outcome == "event":
            value = _payloads.decode_or_raw(message.event.value)
            if args.json:
                print_json(
                    {
                        "workflow_id": args.workflow_id,
                        "key": args.key,
                        "value": plain(value),
                        "version": message.event.version,
                        "set_at": json_time(message.event.set_time.ToDatetime(tzinfo=timezone.utc)),
                    }
                )
            else:
                print_line(to_json(value))
            return EXIT_OK
        if outcome == "workflow_finished":
            status = _management.workflow_status(message.workflow_finished.status)
            note(
                f"workflow {args.workflow_id!r} finished ({status.value}) without setting "
                f"{args.key!r}"
            )
            return EXIT_NOT_FOUND
    note(f"timed out after {args.timeout:g}s waiting for {args.key!r}")
    return EXIT_NOT_FOUND


def _watch(args: argparse.Namespace, client: Client) -> int:
    printer = EventPrinter(args.key, sys.stdout, as_json=args.json)
    try:
        for message in client.get_event(args.workflow_id, args.key, args.timeout, follow=True):
            outcome = message.WhichOneof("outcome")
            if outcome == "event":
                printer.show(_payloads.decode_or_raw(message.event.value))
            elif outcome == "workflow_finished":
                status = _management.workflow_status(message.workflow_finished.status)
                printer.end_line()
                note(f"workflow {args.workflow_id!r} finished: {status.value}")
                return EXIT_OK
    finally:
        printer.end_line()
    note(f"timed out after {args.timeout:g}s")
    return EXIT_NOT_FOUND
