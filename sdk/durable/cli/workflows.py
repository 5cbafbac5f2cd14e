"""`durable workflows start/list/show/cancel/resume/fork/delete`."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from datetime import datetime, timezone
from typing import Any

from durable import _drive, _management, _operations
from durable._client import Client
from durable._core import specs
from durable._core.specs import QueueStart, WorkflowStatus
from durable._management import WorkflowInfo
from durable._workflow import set_start_options, set_workflow_id
from durable.cli import bulk, watch
from durable.cli.args import (
    Parser,
    add_filter_arguments,
    filter_keywords,
    non_negative,
    parse_attribute,
    parse_json,
    whole_number,
)
from durable.cli.console import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, note, print_json, print_line
from durable.cli.formatting import (
    attributes_text,
    due_text,
    local_time,
    plain,
    show_lines,
    step_json,
    table,
    to_json,
    workflow_json,
)

DEFAULT_LIMIT = 100


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `workflows` and its commands to `durable`'s subcommands."""
    workflows = groups.add_parser("workflows", help="start, list, show, cancel, resume, fork")
    commands = workflows.add_subparsers(dest="command", metavar="COMMAND", required=True)

    start = commands.add_parser(
        "start",
        help="start a workflow by name, for a worker that registers the name",
        description="Start workflow NAME with JSON arguments. It is created ENQUEUED (on "
        "--queue, if given) and run by a worker that registers NAME, in any language; it "
        "waits until one does. Prints the workflow's ID and status, or with --wait its "
        "output as JSON. Starting an ID that exists returns that workflow.",
    )
    start.add_argument("name", metavar="NAME", help="the workflow's registered name")
    given = start.add_mutually_exclusive_group()
    given.add_argument(
        "--input",
        type=parse_json,
        metavar="JSON",
        help="the workflow's one argument, as JSON (the same as --args '[JSON]')",
    )
    given.add_argument(
        "--args",
        type=_json_array,
        metavar="JSON",
        help="the workflow's positional arguments, a JSON array",
    )
    start.add_argument(
        "--kwargs",
        type=_json_object,
        metavar="JSON",
        help="the workflow's keyword arguments, a JSON object",
    )
    start.add_argument("--id", metavar="ID", help="the workflow's ID (default: a UUID)")
    start.add_argument("--queue", metavar="QUEUE", help="enqueue it on this queue")
    start.add_argument(
        "--attr",
        type=parse_attribute,
        action="append",
        metavar="KEY=VALUE",
        help="a search attribute to start it with (repeat for several)",
    )
    start.add_argument(
        "--wait",
        type=non_negative(float),
        nargs="?",
        const=-1.0,
        metavar="SECONDS",
        help="wait for its outcome (for at most SECONDS; none: no limit) and print its "
        "output as JSON; exit 1 if it failed, was cancelled or did not finish in time",
    )
    start.set_defaults(run=_start)

    listing = commands.add_parser(
        "list",
        help="list workflows, newest first",
        description="List workflows, newest first. ATTEMPTS counts recoveries after a worker died.",
    )
    add_filter_arguments(listing)
    listing.add_argument(
        "--limit",
        type=whole_number(0),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show at most N (default: {DEFAULT_LIMIT}; 0: all)",
    )
    listing.set_defaults(run=_list)

    show = commands.add_parser("show", help="show a workflow, its steps and its events")
    show.add_argument("workflow_id", metavar="ID")
    show.set_defaults(run=_show)

    cancel = commands.add_parser("cancel", help="cancel a PENDING or ENQUEUED workflow")
    cancel.add_argument("workflow_id", metavar="ID")
    cancel.set_defaults(run=_cancel)

    resume = commands.add_parser(
        "resume", help="resume a CANCELLED or DEAD_LETTER workflow (it becomes ENQUEUED)"
    )
    resume.add_argument("workflow_id", metavar="ID")
    resume.set_defaults(run=_resume)

    fork = commands.add_parser(
        "fork", help="start a copy of a workflow that reruns it from a step (ENQUEUED)"
    )
    fork.add_argument("workflow_id", metavar="ID")
    fork.add_argument(
        "--from-step",
        type=whole_number(1),
        required=True,
        metavar="N",
        help="the first step to run again; earlier steps keep their recorded outcomes",
    )
    fork.add_argument("--new-id", metavar="NEW", help="the new workflow's ID (default: a UUID)")
    fork.add_argument(
        "--version",
        metavar="VERSION",
        help="run the fork on this application version, i.e. only on workers of that "
        "version (default: the original's version)",
    )
    fork.set_defaults(run=_fork)

    delete = commands.add_parser(
        "delete",
        help="delete a finished workflow with its steps, events and messages",
        description="Delete a finished workflow (SUCCESS, ERROR, CANCELLED, DEAD_LETTER) "
        "with its steps, events and messages; with --children its child workflows too, "
        "recursively. An unfinished one (any, with --children) is an error and nothing is "
        "deleted. Asks for confirmation unless --yes. Exit 1 if it did not exist.",
    )
    delete.add_argument("workflow_id", metavar="ID")
    delete.add_argument(
        "--children", action="store_true", help="also delete its child workflows, recursively"
    )
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(run=_delete)

    for command in (start, listing, show, cancel, resume, fork, delete):
        command.add_argument("--json", action="store_true", help="print JSON")

    bulk.add_commands(commands)
    watch.add_command(commands)


def _json_array(text: str) -> list[Any]:
    value = parse_json(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"not a JSON array: {text!r}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    value = parse_json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _start(args: argparse.Namespace, client: Client) -> int:
    positional = [args.input] if args.input is not None else (args.args or [])
    queue = QueueStart(args.queue) if args.queue else None
    attributes = (
        set_start_options(attributes=dict(args.attr)) if args.attr else contextlib.nullcontext()
    )
    with set_workflow_id(args.id) if args.id else contextlib.nullcontext(), attributes:
        op = specs.begin(
            None, specs.named_spec(args.name), positional, args.kwargs or {}, queue=queue
        )
        started = _drive.run(op, client)
    info = _management.workflow_info(started.workflow)
    if args.wait is None:
        if args.json:
            print_json(workflow_json(info))
        else:
            print_line(f"{info.workflow_id}  {info.status.value}")
        return EXIT_OK
    if sys.stderr.isatty():
        note(f"started {info.workflow_id} ({info.status.value}); waiting for its outcome")
    finished = _await(client, info.workflow_id, None if args.wait < 0 else args.wait)
    if finished is None:
        note(f"workflow {info.workflow_id!r} did not finish in {args.wait:g}s")
        return EXIT_NOT_FOUND
    if args.json:
        print_json(workflow_json(finished))
    elif finished.status is WorkflowStatus.SUCCESS:
        print_line(to_json(finished.output))
    if finished.status is WorkflowStatus.SUCCESS:
        return EXIT_OK
    why = f": {finished.error.type}: {finished.error.message}" if finished.error else ""
    note(f"workflow {finished.workflow_id!r} ended {finished.status.value}{why}")
    return EXIT_NOT_FOUND


def _await(client: Client, workflow_id: str, timeout: float | None) -> WorkflowInfo | None:
    """The workflow once it has finished; None if `timeout` seconds pass first."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = specs.AWAIT_CHUNK_SECONDS if end is None else max(0.0, end - time.monotonic())
        reply = client.await_workflow(workflow_id, left)
        if not reply.timed_out:
            return _management.workflow_info(reply.workflow)
        if end is not None and time.monotonic() >= end:
            return None


def waiting_hint(message: Any, now: datetime | None = None) -> str | None:
    """What an ENQUEUED workflow waits for (a pb.Workflow): its due time, then a worker
    that registers its name (and serves its queue). The coordinator has no call that lists
    live workers, so this says what is needed, not whether one is there."""
    info = _management.workflow_info(message)
    if info.status is not WorkflowStatus.ENQUEUED:
        return None
    worker = f"a worker that registers {info.name!r}"
    if info.queue_name:
        worker += f" and serves queue {info.queue_name!r}"
    if info.app_version:
        worker += f" at version {info.app_version!r}"
    if message.HasField("due_time"):
        due = message.due_time.ToDatetime(tzinfo=timezone.utc)
        if due > (now or datetime.now(timezone.utc)):
            return f"ENQUEUED: due at {local_time(due)}, then waiting for {worker}"
    return f"ENQUEUED: waiting for {worker}"


def _list(args: argparse.Namespace, client: Client) -> int:
    found = _management.list_workflows(
        **filter_keywords(args),
        page_size=min(args.limit + 1, _management.MAX_PAGE_SIZE)
        if args.limit
        else _management.MAX_PAGE_SIZE,
        client=client,
    )
    shown = list(itertools.islice(found, args.limit + 1) if args.limit else found)
    more = bool(args.limit) and len(shown) > args.limit
    shown = shown[: args.limit] if args.limit else shown
    if args.json:
        print_json([workflow_json(info) for info in shown])
    elif shown:
        headers = ["ID", "NAME", "STATUS", "CREATED", "ATTEMPTS"]
        rows = [
            [
                info.workflow_id,
                info.name,
                info.status.value,
                local_time(info.created_at),
                str(info.recovery_attempts),
            ]
            for info in shown
        ]
        if any(info.app_version for info in shown):
            headers.append("VERSION")
            for row, info in zip(rows, shown, strict=True):
                row.append(info.app_version or "-")
        if any(info.due_time for info in shown):
            headers.append("DUE")
            for row, info in zip(rows, shown, strict=True):
                row.append(due_text(info))
        if any(info.attributes for info in shown):
            headers.append("ATTRIBUTES")
            for row, info in zip(rows, shown, strict=True):
                row.append(attributes_text(info.attributes) or "-")
        for line in table(headers, rows):
            print_line(line)
    else:
        note("no workflows match")
    if more:
        note(f"showing the newest {args.limit}; more match (raise --limit, 0 for all)")
    return EXIT_OK


def _show(args: argparse.Namespace, client: Client) -> int:
    message = client.get_workflow(args.workflow_id)
    info = _management.workflow_info(message)
    steps = _management.list_steps(args.workflow_id, client=client)
    events = _management.list_events(args.workflow_id, client=client)
    if args.json:
        print_json(
            {
                "workflow": workflow_json(info),
                "steps": [step_json(step) for step in steps],
                "events": {key: plain(value) for key, value in events.items()},
            }
        )
    else:
        for line in show_lines(info, steps, events):
            print_line(line)
        hint = waiting_hint(message)
        if hint is not None:
            note(hint)
    return EXIT_OK


def _print_status(args: argparse.Namespace, info: WorkflowInfo) -> None:
    if args.json:
        print_json(workflow_json(info))
    else:
        print_line(f"{info.workflow_id}  {info.status.value}")


def _cancel(args: argparse.Namespace, client: Client) -> int:
    info = _management.cancel_workflow(args.workflow_id, client=client)
    if info.status is not WorkflowStatus.CANCELLED:
        note(f"workflow {info.workflow_id!r} had already finished ({info.status.value})")
    _print_status(args, info)
    return EXIT_OK


def _resume(args: argparse.Namespace, client: Client) -> int:
    info = _management.resume_workflow(args.workflow_id, client=client)
    if info.status is not WorkflowStatus.ENQUEUED:
        note(f"workflow {info.workflow_id!r} was already {info.status.value}; nothing changed")
    _print_status(args, info)
    return EXIT_OK


def _fork(args: argparse.Namespace, client: Client) -> int:
    handle = _management.fork_workflow(
        args.workflow_id,
        args.from_step,
        new_workflow_id=args.new_id,
        app_version=args.version,
        client=client,
    )
    _print_status(args, _management.get_workflow(handle.workflow_id, client=client))
    return EXIT_OK


def _delete(args: argparse.Namespace, client: Client) -> int:
    what = f"workflow {args.workflow_id!r}" + (" and its children" if args.children else "")
    if not args.yes:
        if not sys.stdin.isatty():
            note(f"not deleting {what}: confirm with --yes (stdin is not a terminal)")
            return EXIT_ERROR
        sys.stderr.write(f"delete {what}? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            note("nothing deleted")
            return EXIT_ERROR
    deleted = _operations.delete_workflow(args.workflow_id, args.children, client=client)
    if args.json:
        print_json({"workflow_id": args.workflow_id, "deleted": deleted})
    if not deleted:
        note(f"workflow {args.workflow_id!r} does not exist; nothing deleted")
        return EXIT_NOT_FOUND
    if not args.json:
        print_line(f"deleted {deleted} workflow{'s' if deleted != 1 else ''}")
    return EXIT_OK
