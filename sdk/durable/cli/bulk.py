"""`durable workflows cancel-all` and `resume-all`: a bulk action by the filters of
`workflows list`, counted first (a dry run), confirmed, then run with progress per batch."""

from __future__ import annotations

import argparse
import sys

from durable import _bulk
from durable._bulk import BulkProgress
from durable._client import Client
from durable.cli.args import Parser, add_filter_arguments, filter_keywords
from durable.cli.console import EXIT_ERROR, EXIT_OK, note, print_json, print_line

_ACTIONS = {
    # command: (function, verb, its -ing form, past tense, the statuses it applies to)
    "cancel-all": (
        _bulk.cancel_workflows,
        "cancel",
        "cancelling",
        "cancelled",
        "ENQUEUED or PENDING",
    ),
    "resume-all": (
        _bulk.resume_workflows,
        "resume",
        "resuming",
        "resumed",
        "CANCELLED or DEAD_LETTER",
    ),
}


def add_commands(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add `cancel-all` and `resume-all` to the `workflows` group's commands."""
    for command, (_, verb, _ing, _past, statuses) in _ACTIONS.items():
        parser = commands.add_parser(
            command,
            help=f"{verb} every {statuses} workflow matching filters, in batches",
            description=f"{verb.capitalize()} the {statuses} workflows matching the filters "
            f"(those of `workflows list`), as `workflows {verb}` would each. First counts "
            "them (a dry run) and asks for confirmation, unless --yes; without --yes and "
            "without a terminal on stdin, refuses (exit 2). Then works in batches of 500, "
            "each committed before the next, and shows the progress after each. Without "
            "any filter every workflow of the namespace matches: that needs --all. "
            "Ctrl-C stops it after the batch under way; earlier batches stay done.",
        )
        add_filter_arguments(parser)
        parser.add_argument(
            "--all",
            action="store_true",
            help="with no filter: mean every workflow of the namespace",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="only count the workflows it would change"
        )
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=_run, bulk_command=command)


def _plural(n: int) -> str:
    return f"{n} workflow{'s' if n != 1 else ''}"


def _run(args: argparse.Namespace, client: Client) -> int:
    action, verb, verbing, past, statuses = _ACTIONS[args.bulk_command]
    filters = filter_keywords(args)
    if not args.all and not any(filters.values()):
        note(
            "no filter given: that matches every workflow of the namespace; add --all to mean"
            " that, or filter (--status, --name, --queue, --attr, ...)"
        )
        return EXIT_ERROR
    counted = action(**filters, dry_run=True, match_all=args.all, client=client)
    if args.dry_run:
        if args.json:
            print_json({"matched": counted.matched, "changed": 0, "dry_run": True})
        else:
            print_line(f"{_plural(counted.matched)} ({statuses}) would be {past}")
        return EXIT_OK
    matched = f"{_plural(counted.matched)} ({statuses}) match"
    if counted.matched == 0:
        if args.json:
            print_json({"matched": 0, "changed": 0, "dry_run": False})
        else:
            print_line(f"nothing to {verb}: no {statuses} workflow matches")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            note(f"{matched}; not {verbing} them: confirm with --yes (stdin is not a terminal)")
            return EXIT_ERROR
        sys.stderr.write(f"{matched}. {verb.capitalize()} them? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            note(f"nothing {past}")
            return EXIT_ERROR
    else:
        note(matched)

    def show(progress: BulkProgress) -> None:
        if not progress.done:
            note(f"{past} {progress.changed} of {progress.matched} matched so far")

    result = action(**filters, match_all=args.all, on_progress=show, client=client)
    if args.json:
        print_json({"matched": result.matched, "changed": result.changed, "dry_run": False})
    else:
        skipped = result.matched - result.changed
        extra = f" ({skipped} changed by someone else first or skipped)" if skipped else ""
        print_line(f"{past} {_plural(result.changed)}{extra}")
    return EXIT_OK
