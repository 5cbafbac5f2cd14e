"""`durable`: inspect and manage workflows, and read their events, from a shell.

    durable [--coordinator ADDRESS] [--token TOKEN] [--tls-ca PATH ...] COMMAND ...

    durable workflows list [--status STATUS ...] [--name NAME] [--version VERSION]
                           [--since WHEN] [--limit N]
    durable workflows show ID
    durable workflows cancel ID
    durable workflows resume ID
    durable workflows fork ID --from-step N [--new-id NEW] [--version VERSION]
    durable schedules list [--workflow NAME]
    durable schedules show NAME
    durable schedules pause NAME | resume NAME | delete NAME | trigger NAME
    durable events get ID KEY [--timeout SECONDS]
    durable events watch ID KEY [--timeout SECONDS]
    durable messages send ID JSON [--topic TOPIC] [--idempotency-key KEY]

Every command takes `--json` for machine-readable output. Exit status: 0 on success, 1 when
a wait ended without what it waited for (a timeout, or a workflow that finished without
setting the key) or there was no schedule to delete, 2 on an error (an unknown workflow or
schedule, an unreachable coordinator, bad input), reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import re
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn, TextIO

from durable import _management, _payloads, _schedules
from durable._client import Client
from durable._connection import TLS
from durable._core.schedules import ScheduleInfo
from durable._core.specs import WorkflowStatus
from durable._management import FailureInfo, StepInfo, WorkflowInfo
from durable._payloads import RawPayload
from durable._retry import RetryPolicy
from durable.errors import (
    CoordinatorUnavailableError,
    DurableError,
    UnauthenticatedError,
)
from durable.ui.cli import add_parser as add_ui_parser
from durable.v1 import coordinator_pb2 as pb

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # a wait timed out, or ended without a value; nothing to delete
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

PROG = "durable"
BAR_WIDTH = 20
# The widest a value is shown in a table before it is cut (--json shows it all).
CELL_WIDTH = 60
DEFAULT_LIMIT = 100
DEFAULT_GET_TIMEOUT = 60.0
DEFAULT_WATCH_TIMEOUT = 3600.0
DEFAULT_RETRY_SECONDS = 10.0
# How many next tick times `schedules list` shows (`schedules show` shows all it gets, 5).
LIST_TICKS = 3

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


# --- formatting -------------------------------------------------------------------------


def progress_bar(value: Any, width: int = BAR_WIDTH) -> str | None:
    """`value` as a bar, e.g. "[##########----------]  50%", when it is a number from 0 to
    100; None for anything else. The bar fills (and the percentage reads 100) only at 100."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 100:
        return None
    filled = math.floor(value * width / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {math.floor(value):>3}%"


def event_line(key: str, value: Any) -> str:
    """How `events watch` shows one value: a progress bar for a number from 0 to 100, the
    value as JSON otherwise."""
    bar = progress_bar(value)
    return f"{key}  {bar if bar is not None else to_json(value)}"


def plain(value: Any) -> Any:
    """A decoded payload as a JSON-serializable value (bytes of other encodings as base64)."""
    if isinstance(value, RawPayload):
        return {"encoding": value.encoding, "data_base64": base64.b64encode(value.data).decode()}
    return value


def to_json(value: Any) -> str:
    return json.dumps(plain(value), ensure_ascii=False)


def local_time(value: datetime | None) -> str:
    """A time in local ISO 8601 to the second, e.g. 2026-11-25T12:03:45+01:00; "-" for none."""
    return value.astimezone().isoformat(timespec="seconds") if value is not None else "-"


def _json_time(value: datetime | None) -> str | None:
    return value.astimezone().isoformat() if value is not None else None


def _json_failure(failure: FailureInfo | None) -> dict[str, str] | None:
    return {"type": failure.type, "message": failure.message} if failure is not None else None


def workflow_json(info: WorkflowInfo) -> dict[str, Any]:
    return {
        "workflow_id": info.workflow_id,
        "name": info.name,
        "status": info.status.value,
        "input": plain(info.input),
        "output": plain(info.output),
        "error": _json_failure(info.error),
        "created_at": _json_time(info.created_at),
        "updated_at": _json_time(info.updated_at),
        "executor_id": info.executor_id,
        "recovery_attempts": info.recovery_attempts,
        "deadline": _json_time(info.deadline),
        "forked_from": info.forked_from,
        "queue_name": info.queue_name,
        "priority": info.priority,
        "deduplication_id": info.deduplication_id,
        "parent_workflow_id": info.parent_workflow_id,
        "app_version": info.app_version,
        "schedule_name": info.schedule_name,
        "scheduled_time": _json_time(info.scheduled_time),
    }


def schedule_state(info: ScheduleInfo, now: datetime | None = None) -> str:
    """ "paused", "ended" (its end time has passed: no tick is left) or "active"."""
    if info.paused:
        return "paused"
    now = now or datetime.now(timezone.utc)
    if (info.end_time is not None and info.end_time <= now) or not info.next_ticks:
        return "ended"
    return "active"


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "cron": info.cron,
        "time_zone": info.time_zone or "UTC",
        "workflow_name": info.workflow_name,
        "input": plain(info.input),
        "queue_name": info.queue_name,
        "start_time": _json_time(info.start_time),
        "end_time": _json_time(info.end_time),
        "catch_up": info.catch_up,
        "state": schedule_state(info),
        "paused": info.paused,
        "created_at": _json_time(info.created_at),
        "updated_at": _json_time(info.updated_at),
        "last_tick": _json_time(info.last_tick),
        "last_workflow_id": info.last_workflow_id,
        "next_ticks": [_json_time(tick) for tick in info.next_ticks],
    }


def step_json(step: StepInfo) -> dict[str, Any]:
    return {
        "step_id": step.step_id,
        "name": step.name,
        "kind": step.kind,
        "output": plain(step.output),
        "error": _json_failure(step.error),
        "started_at": _json_time(step.started_at),
        "recorded_at": _json_time(step.recorded_at),
        "attempts": step.attempts,
        "deadline": _json_time(step.deadline),
        "timed_out": step.timed_out,
        "failed_attempts": [
            {
                "attempt": attempt.attempt,
                "error": _json_failure(attempt.error),
                "started_at": _json_time(attempt.started_at),
                "ended_at": _json_time(attempt.ended_at),
            }
            for attempt in step.failed_attempts
        ],
    }


def _short(text: str, width: int = CELL_WIDTH) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= width else text[: width - 3] + "..."


def _failure_text(failure: FailureInfo) -> str:
    return f"{failure.type}: {failure.message}" if failure.message else failure.type


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows under headers, in columns two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _took(step: StepInfo) -> str:
    if step.started_at is None:
        return "-"
    return f"{(step.recorded_at - step.started_at).total_seconds():.2f}s"


def _outcome(step: StepInfo) -> str:
    if step.error is not None:
        return _short(f"error {_failure_text(step.error)}")
    if step.kind == "set_event":
        return "-"  # the value is under EVENTS
    if step.timed_out:
        return "timed out"  # a recv or get_event that got no value
    if step.kind == "sleep" and step.deadline is not None:
        return f"until {local_time(step.deadline)}"
    return _short(to_json(step.output))


def show_lines(info: WorkflowInfo, steps: list[StepInfo], events: dict[str, Any]) -> list[str]:
    """`workflows show` as text: the workflow, its steps and its events."""
    fields = [
        ("workflow", info.workflow_id),
        ("name", info.name),
        ("status", info.status.value),
        ("created", local_time(info.created_at)),
        ("updated", local_time(info.updated_at)),
        ("input", _short(to_json(info.input), 200)),
    ]
    if info.status is WorkflowStatus.SUCCESS:
        fields.append(("output", _short(to_json(info.output), 200)))
    if info.error is not None:
        fields.append(("error", _short(_failure_text(info.error), 200)))
    if info.executor_id:
        fields.append(("executor", info.executor_id))
    fields.append(("recoveries", str(info.recovery_attempts)))
    if info.deadline is not None:
        fields.append(("deadline", local_time(info.deadline)))
    if info.forked_from:
        fields.append(("forked from", info.forked_from))
    if info.parent_workflow_id:
        fields.append(("parent", info.parent_workflow_id))
    if info.queue_name:
        fields.append(("queue", f"{info.queue_name} (priority {info.priority})"))
    if info.deduplication_id:
        fields.append(("dedup id", info.deduplication_id))
    if info.app_version:
        fields.append(("version", info.app_version))
    if info.schedule_name:
        fields.append(("schedule", info.schedule_name))
    if info.scheduled_time is not None:
        fields.append(("scheduled for", local_time(info.scheduled_time)))
    lines = _fields(fields)

    lines += ["", f"steps ({len(steps)})"]
    if steps:
        rows = [
            [
                str(step.step_id),
                step.name,
                step.kind,
                str(step.attempts),
                local_time(step.recorded_at),
                _took(step),
                _outcome(step),
            ]
            for step in steps
        ]
        header, *body = table(
            ["STEP", "NAME", "KIND", "ATTEMPTS", "RECORDED", "TOOK", "OUTCOME"], rows
        )
        lines.append(f"  {header}")
        for step, row in zip(steps, body, strict=True):
            lines.append(f"  {row}")
            lines += [
                f"        attempt {attempt.attempt} failed at {local_time(attempt.ended_at)}: "
                f"{_short(_failure_text(attempt.error))}"
                for attempt in step.failed_attempts
            ]

    lines += ["", f"events ({len(events)})"]
    if events:
        rows = [[key, _short(to_json(value))] for key, value in events.items()]
        lines += [f"  {line}" for line in table(["KEY", "VALUE"], rows)]
    return lines


def _fields(fields: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in fields)
    return [f"{label.ljust(width)}  {value}" for label, value in fields]


def schedule_rows(schedules: Sequence[ScheduleInfo], now: datetime | None = None) -> list[str]:
    """`schedules list` as text: a table, a schedule per row, with its next few ticks."""
    rows = [
        [
            info.name,
            _short(info.cron),
            info.time_zone or "UTC",
            info.workflow_name,
            schedule_state(info, now),
            local_time(info.last_tick),
            ", ".join(local_time(tick) for tick in info.next_ticks[:LIST_TICKS]) or "-",
        ]
        for info in schedules
    ]
    return table(
        ["NAME", "CRON", "TIME ZONE", "WORKFLOW", "STATE", "LAST TICK", "NEXT TICKS"], rows
    )


def schedule_lines(info: ScheduleInfo, now: datetime | None = None) -> list[str]:
    """`schedules show` as text: the schedule, its next ticks, and why its workflows may
    not run."""
    fields = [
        ("schedule", info.name),
        ("cron", info.cron),
        ("time zone", info.time_zone or "UTC"),
        ("workflow", info.workflow_name),
        ("input", _short(to_json(info.input), 200)),
    ]
    if info.queue_name:
        fields.append(("queue", info.queue_name))
    fields.append(("state", schedule_state(info, now)))
    fields.append(("catch-up", info.catch_up))
    if info.start_time is not None:
        fields.append(("starts", local_time(info.start_time)))
    if info.end_time is not None:
        fields.append(("ends", local_time(info.end_time)))
    fields += [
        ("created", local_time(info.created_at)),
        ("updated", local_time(info.updated_at)),
        ("last tick", local_time(info.last_tick)),
    ]
    if info.last_workflow_id:
        fields.append(("last workflow", info.last_workflow_id))
    lines = _fields(fields)
    lines += ["", f"next ticks ({len(info.next_ticks)})"]
    lines += [f"  {local_time(tick)}" for tick in info.next_ticks]
    if info.warnings:
        lines += ["", f"warnings ({len(info.warnings)})"]
        lines += [f"  WARNING: {warning}" for warning in info.warnings]
    return lines


class EventPrinter:
    """Shows the values `events watch` receives: one JSON value per line with `--json`;
    otherwise `event_line`s, a progress bar redrawn in place on a terminal."""

    def __init__(self, key: str, out: TextIO, *, as_json: bool, tty: bool | None = None) -> None:
        self.key = key
        self.out = out
        self.as_json = as_json
        self.tty = out.isatty() if tty is None else tty
        self._drawn = 0  # length of the bar left on the terminal's current line

    def show(self, value: Any) -> None:
        if self.as_json:
            self.out.write(to_json(value) + "\n")
        elif self.tty and progress_bar(value) is not None:
            line = event_line(self.key, value)
            self.out.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
        else:
            self.end_line()
            self.out.write(event_line(self.key, value) + "\n")
        self.out.flush()

    def end_line(self) -> None:
        """Move past a bar drawn in place, so what follows starts on a fresh line."""
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = 0


# --- arguments --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
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


def _status(text: str) -> WorkflowStatus:
    try:
        return WorkflowStatus(text.upper())
    except ValueError:
        known = ", ".join(status.value for status in WorkflowStatus)
        raise argparse.ArgumentTypeError(f"unknown status {text!r} (one of {known})") from None


def _non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value

    return parse


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {minimum} or more")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Inspect and manage durable workflows and read their events.",
        epilog="Exit status: 0 success, 1 a wait ended without a value (timeout) or nothing "
        "was there to delete, 2 an error.",
    )
    parser.add_argument(
        "--coordinator",
        metavar="ADDRESS",
        default=os.environ.get("DURABLE_COORDINATOR") or None,
        help="coordinator host:port or unix:/path (default: $DURABLE_COORDINATOR or "
        "127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("DURABLE_TOKEN") or None,
        help="bearer token (default: $DURABLE_TOKEN)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PATH",
        help="connect with TLS, verifying the coordinator with this CA certificate (PEM) "
        "(default: $DURABLE_TLS_CA and the other DURABLE_TLS_* variables)",
    )
    parser.add_argument("--tls-client-cert", metavar="PATH", help="client certificate (PEM)")
    parser.add_argument("--tls-client-key", metavar="PATH", help="client private key (PEM)")
    parser.add_argument(
        "--tls-server-name", metavar="NAME", help="name to verify the coordinator's certificate"
    )
    parser.add_argument(
        "--retry-seconds",
        type=_non_negative(float),
        default=DEFAULT_RETRY_SECONDS,
        metavar="SECONDS",
        help="keep retrying while the coordinator is unavailable for this long "
        f"(default: {DEFAULT_RETRY_SECONDS:g}; 0: fail at once)",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    workflows = groups.add_parser("workflows", help="list, show, cancel, resume, fork")
    commands = workflows.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list",
        help="list workflows, newest first",
        description="List workflows, newest first. ATTEMPTS counts recoveries after a worker died.",
    )
    listing.add_argument(
        "--status",
        type=_status,
        nargs="+",
        action="extend",
        metavar="STATUS",
        help="only these statuses: " + ", ".join(s.value for s in WorkflowStatus),
    )
    listing.add_argument("--name", help="only workflows with this name")
    listing.add_argument("--parent", metavar="ID", help="only child workflows of workflow ID")
    listing.add_argument("--queue", metavar="NAME", help="only workflows enqueued on NAME")
    listing.add_argument(
        "--version", metavar="VERSION", help="only workflows of this application version"
    )
    listing.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="only workflows created since: an ISO 8601 time (local unless it names a "
        "zone) or a duration ago such as 30m, 1h, 2d",
    )
    listing.add_argument(
        "--limit",
        type=_whole(0),
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
        type=_whole(1),
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

    schedules = groups.add_parser(
        "schedules", help="list, show, pause, resume, delete, trigger cron schedules"
    )
    schedule_commands = schedules.add_subparsers(dest="command", metavar="COMMAND", required=True)
    schedule_list = schedule_commands.add_parser(
        "list",
        help="list schedules with their next tick times",
        description="List schedules by name, each with its state (active, paused or ended), "
        f"its last tick and its next {LIST_TICKS} tick times.",
    )
    schedule_list.add_argument(
        "--workflow", metavar="NAME", help="only schedules that start workflow NAME"
    )
    schedule_list.set_defaults(run=_schedules_list)
    schedule_show = schedule_commands.add_parser(
        "show",
        help="show a schedule, its next tick times and why its workflows may not run",
    )
    schedule_pause = schedule_commands.add_parser(
        "pause", help="pause a schedule: no workflow starts for its ticks until resumed"
    )
    schedule_resume = schedule_commands.add_parser(
        "resume", help="resume a paused schedule from its next tick (missed ticks are skipped)"
    )
    schedule_delete = schedule_commands.add_parser(
        "delete",
        help="delete a schedule (workflows it started are left as they are); exit 1 if "
        "there was none",
    )
    schedule_trigger = schedule_commands.add_parser(
        "trigger", help="start the schedule's workflow now and print its ID"
    )
    for command, run in (
        (schedule_show, _schedules_show),
        (schedule_pause, _schedules_pause),
        (schedule_resume, _schedules_resume),
        (schedule_delete, _schedules_delete),
        (schedule_trigger, _schedules_trigger),
    ):
        command.add_argument("name", metavar="NAME")
        command.set_defaults(run=run)

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
            type=_non_negative(float),
            default=default,
            metavar="SECONDS",
            help=f"how long to wait (default: {default:g})",
        )
    get.set_defaults(run=_get_event)
    watch.set_defaults(run=_watch_event)

    messages = groups.add_parser("messages", help="send a message to a workflow")
    message_commands = messages.add_subparsers(dest="command", metavar="COMMAND", required=True)
    send = message_commands.add_parser(
        "send",
        help="send a JSON message to a workflow (which need not have started yet)",
        description="Send a JSON message to a workflow; it waits there until the workflow "
        "receives it with durable.recv. With --idempotency-key, sending again with the same "
        "key delivers nothing.",
    )
    send.add_argument("workflow_id", metavar="ID")
    send.add_argument("message", metavar="JSON", type=_json_value, help="the message, as JSON")
    send.add_argument("--topic", default="", help="the topic (default: the default topic)")
    send.add_argument("--idempotency-key", metavar="KEY", help="deliver at most once per KEY")
    send.set_defaults(run=_send_message)

    for command in (
        listing,
        show,
        cancel,
        resume,
        fork,
        get,
        watch,
        send,
        schedule_list,
        schedule_show,
        schedule_pause,
        schedule_resume,
        schedule_delete,
        schedule_trigger,
    ):
        command.add_argument("--json", action="store_true", help="print JSON")
    add_ui_parser(groups)  # `durable ui` (the `ui` extra's web stack loads only when run)
    return parser


# --- commands ---------------------------------------------------------------------------


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _note(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")


def _print_json(value: Any) -> None:
    _print(json.dumps(value, ensure_ascii=False, indent=2))


def _list(args: argparse.Namespace, client: Client) -> int:
    found = _management.list_workflows(
        status=args.status,
        name=args.name,
        created_after=args.since,
        parent_workflow_id=args.parent,
        queue_name=args.queue,
        app_version=args.version,
        page_size=min(args.limit + 1, _management.MAX_PAGE_SIZE)
        if args.limit
        else _management.MAX_PAGE_SIZE,
        client=client,
    )
    shown = list(itertools.islice(found, args.limit + 1) if args.limit else found)
    more = bool(args.limit) and len(shown) > args.limit
    shown = shown[: args.limit] if args.limit else shown
    if args.json:
        _print_json([workflow_json(info) for info in shown])
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
        for line in table(headers, rows):
            _print(line)
    else:
        _note("no workflows match")
    if more:
        _note(f"showing the newest {args.limit}; more match (raise --limit, 0 for all)")
    return EXIT_OK


def _show(args: argparse.Namespace, client: Client) -> int:
    info = _management.get_workflow(args.workflow_id, client=client)
    steps = _management.list_steps(args.workflow_id, client=client)
    events = _management.list_events(args.workflow_id, client=client)
    if args.json:
        _print_json(
            {
                "workflow": workflow_json(info),
                "steps": [step_json(step) for step in steps],
                "events": {key: plain(value) for key, value in events.items()},
            }
        )
    else:
        for line in show_lines(info, steps, events):
            _print(line)
    return EXIT_OK


def _print_status(args: argparse.Namespace, info: WorkflowInfo) -> None:
    if args.json:
        _print_json(workflow_json(info))
    else:
        _print(f"{info.workflow_id}  {info.status.value}")


def _cancel(args: argparse.Namespace, client: Client) -> int:
    info = _management.cancel_workflow(args.workflow_id, client=client)
    if info.status is not WorkflowStatus.CANCELLED:
        _note(f"workflow {info.workflow_id!r} had already finished ({info.status.value})")
    _print_status(args, info)
    return EXIT_OK


def _resume(args: argparse.Namespace, client: Client) -> int:
    info = _management.resume_workflow(args.workflow_id, client=client)
    if info.status is not WorkflowStatus.ENQUEUED:
        _note(f"workflow {info.workflow_id!r} was already {info.status.value}; nothing changed")
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


def _schedules_list(args: argparse.Namespace, client: Client) -> int:
    found = _schedules.list_schedules(args.workflow, client=client)
    if args.json:
        _print_json([schedule_json(info) for info in found])
    elif found:
        for line in schedule_rows(found):
            _print(line)
    else:
        _note("no schedules" + (f" start workflow {args.workflow!r}" if args.workflow else ""))
    return EXIT_OK


def _schedules_show(args: argparse.Namespace, client: Client) -> int:
    info = _schedules.get_schedule(args.name, client=client)
    if args.json:
        _print_json({**schedule_json(info), "warnings": list(info.warnings)})
    else:
        for line in schedule_lines(info):
            _print(line)
    return EXIT_OK


def _print_schedule_state(args: argparse.Namespace, info: ScheduleInfo) -> None:
    if args.json:
        _print_json(schedule_json(info))
    else:
        _print(f"{info.name}  {schedule_state(info)}")


def _schedules_pause(args: argparse.Namespace, client: Client) -> int:
    _print_schedule_state(args, _schedules.pause_schedule(args.name, client=client))
    return EXIT_OK


def _schedules_resume(args: argparse.Namespace, client: Client) -> int:
    _print_schedule_state(args, _schedules.resume_schedule(args.name, client=client))
    return EXIT_OK


def _schedules_delete(args: argparse.Namespace, client: Client) -> int:
    deleted = _schedules.delete_schedule(args.name, client=client)
    if args.json:
        _print(json.dumps({"name": args.name, "deleted": deleted}))
    if not deleted:
        _note(f"schedule {args.name!r} does not exist; nothing deleted")
        return EXIT_NOT_FOUND
    if not args.json:
        _note(f"deleted schedule {args.name!r}; workflows it started are left as they are")
    return EXIT_OK


def _schedules_trigger(args: argparse.Namespace, client: Client) -> int:
    started = client.trigger_schedule(args.name)
    info = _management.workflow_info(started)
    if args.json:
        _print_json(workflow_json(info))
    else:
        _print(info.workflow_id)
    return EXIT_OK


def _get_event(args: argparse.Namespace, client: Client) -> int:
    for message in client.get_event(args.workflow_id, args.key, args.timeout, follow=False):
        outcome = message.WhichOneof("outcome")
        if outcome == "event":
            value = _payloads.decode(message.event.value)
            if args.json:
                _print_json(
                    {
                        "workflow_id": args.workflow_id,
                        "key": args.key,
                        "value": plain(value),
                        "version": message.event.version,
                        "set_at": _json_time(
                            message.event.set_time.ToDatetime(tzinfo=timezone.utc)
                        ),
                    }
                )
            else:
                _print(to_json(value))
            return EXIT_OK
        if outcome == "workflow_finished":
            status = _management.workflow_status(message.workflow_finished.status)
            _note(
                f"workflow {args.workflow_id!r} finished ({status.value}) without setting "
                f"{args.key!r}"
            )
            return EXIT_NOT_FOUND
    _note(f"timed out after {args.timeout:g}s waiting for {args.key!r}")
    return EXIT_NOT_FOUND


def _watch_event(args: argparse.Namespace, client: Client) -> int:
    printer = EventPrinter(args.key, sys.stdout, as_json=args.json)
    try:
        for message in client.get_event(args.workflow_id, args.key, args.timeout, follow=True):
            outcome = message.WhichOneof("outcome")
            if outcome == "event":
                printer.show(_payloads.decode(message.event.value))
            elif outcome == "workflow_finished":
                status = _management.workflow_status(message.workflow_finished.status)
                printer.end_line()
                _note(f"workflow {args.workflow_id!r} finished: {status.value}")
                return EXIT_OK
    finally:
        printer.end_line()
    _note(f"timed out after {args.timeout:g}s")
    return EXIT_NOT_FOUND


def _send_message(args: argparse.Namespace, client: Client) -> int:
    # A key of our own when none is given, so the client's retries deliver once.
    key = args.idempotency_key or str(uuid.uuid4())
    request = pb.SendRequest(
        destination_workflow_id=args.workflow_id,
        topic=args.topic,
        message=_payloads.encode(args.message),
        idempotency_key=key,
    )
    sent = not client.send(request).already_sent
    if args.json:
        _print(json.dumps({"workflow_id": args.workflow_id, "sent": sent, "idempotency_key": key}))
    elif sent:
        _note(f"sent to {args.workflow_id!r}")
    else:
        _note(f"not sent again: idempotency key {key!r} was used before for {args.workflow_id!r}")
    return EXIT_OK


# --- main -------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls_ca or args.tls_client_cert or args.tls_client_key or args.tls_server_name:
        tls = TLS.from_files(
            args.tls_ca, args.tls_client_cert, args.tls_client_key, args.tls_server_name
        )
    return Client(
        args.coordinator,
        token=args.token,
        tls=tls,
        retry=RetryPolicy(total_seconds=args.retry_seconds),
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        client = _client(args)
    except OSError as exc:
        _note(f"cannot read a TLS file: {_one_line(exc)}")
        return EXIT_ERROR
    try:
        code: int = args.run(args, client)
        return code
    except CoordinatorUnavailableError as exc:
        _note(f"coordinator {client.target} is unavailable: {_one_line(exc)}")
    except UnauthenticatedError as exc:
        _note(f"not authenticated (check --token): {_one_line(exc)}")
    except DurableError as exc:
        _note(_one_line(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a second error when
        # Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    finally:
        client.close()
    return EXIT_ERROR
