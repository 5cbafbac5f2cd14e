"""`durable workflows watch`: print each status change of the matching workflows as it
happens (WatchWorkflows), one line each; JSON lines with `--json`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from durable._client import Client
from durable._watch import WorkflowChange, watch_workflows
from durable.cli.args import Parser, add_filter_arguments, filter_keywords, non_negative
from durable.cli.console import EXIT_OK, print_line
from durable.cli.formatting import json_time, local_time


def add_command(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add `watch` to the `workflows` commands."""
    watch = commands.add_parser(
        "watch",
        help="print each status change of the matching workflows as it happens",
        description="Print each status change (created, claimed, succeeded, failed, "
        "cancelled, resumed...) of the workflows matching the filters, as it happens, one "
        "line each, until --timeout or Ctrl-C. Each change has a cursor: --after CURSOR "
        "resumes after it, missing nothing in between.",
    )
    add_filter_arguments(watch, statuses="only changes to these statuses", since=False)
    watch.add_argument(
        "--after", metavar="CURSOR", help="resume after this change's cursor (default: now)"
    )
    watch.add_argument(
        "--timeout",
        type=non_negative(float),
        metavar="SECONDS",
        help="stop after this many seconds (default: never)",
    )
    watch.add_argument(
        "--json", action="store_true", help="print one JSON object per line, with its cursor"
    )
    watch.set_defaults(run=_watch)


def change_json(change: WorkflowChange) -> dict[str, Any]:
    info = change.workflow
    return {
        "cursor": change.cursor,
        "workflow_id": change.workflow_id,
        "name": change.name,
        "status": change.status.value,
        "changed_at": json_time(change.changed_at),
        "queue_name": info.queue_name,
        "parent_workflow_id": info.parent_workflow_id,
        "attributes": info.attributes,
        "error": None if info.error is None else info.error._asdict(),
    }


def change_line(change: WorkflowChange) -> str:
    return "  ".join(
        (
            local_time(change.changed_at),
            f"{change.status.value:<11}",
            change.workflow_id,
            change.name,
        )
    )


def _watch(args: argparse.Namespace, client: Client) -> int:
    changes = watch_workflows(
        **filter_keywords(args),
        after=args.after,
        timeout=args.timeout,
        client=client,
    )
    for change in changes:
        print_line(json.dumps(change_json(change)) if args.json else change_line(change))
        sys.stdout.flush()
    return EXIT_OK
