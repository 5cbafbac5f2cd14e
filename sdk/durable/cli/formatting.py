"""How `durable` shows what it reads: progress bars, tables, the JSON shapes of `--json`,
local times, and the text of `workflows show` and `schedules list/show`. Pure functions
(and `EventPrinter`, which writes to the stream it is given)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from durable._core.schedules import ScheduleInfo
from durable._core.specs import WorkflowStatus
from durable._management import FailureInfo, StepInfo, WorkflowInfo
from durable._payloads import RawPayload

BAR_WIDTH = 20
# The widest a value is shown in a table before it is cut (--json shows it all).
CELL_WIDTH = 60
# How many next tick times `schedules list` shows (`schedules show` shows all it gets, 5).
LIST_TICKS = 3


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


def json_time(value: datetime | None) -> str | None:
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
        "created_at": json_time(info.created_at),
        "updated_at": json_time(info.updated_at),
        "executor_id": info.executor_id,
        "recovery_attempts": info.recovery_attempts,
        "deadline": json_time(info.deadline),
        "forked_from": info.forked_from,
        "queue_name": info.queue_name,
        "priority": info.priority,
        "deduplication_id": info.deduplication_id,
        "parent_workflow_id": info.parent_workflow_id,
        "app_version": info.app_version,
        "schedule_name": info.schedule_name,
        "scheduled_time": json_time(info.scheduled_time),
        "due_time": json_time(info.due_time),
        "debounce_key": info.debounce_key,
        "attributes": dict(info.attributes),
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
        "start_time": json_time(info.start_time),
        "end_time": json_time(info.end_time),
        "catch_up": info.catch_up,
        "state": schedule_state(info),
        "paused": info.paused,
        "created_at": json_time(info.created_at),
        "updated_at": json_time(info.updated_at),
        "last_tick": json_time(info.last_tick),
        "last_workflow_id": info.last_workflow_id,
        "next_ticks": [json_time(tick) for tick in info.next_ticks],
    }


def step_json(step: StepInfo) -> dict[str, Any]:
    return {
        "step_id": step.step_id,
        "name": step.name,
        "kind": step.kind,
        "output": plain(step.output),
        "error": _json_failure(step.error),
        "started_at": json_time(step.started_at),
        "recorded_at": json_time(step.recorded_at),
        "attempts": step.attempts,
        "deadline": json_time(step.deadline),
        "timed_out": step.timed_out,
        "failed_attempts": [
            {
                "attempt": attempt.attempt,
                "error": _json_failure(attempt.error),
                "started_at": json_time(attempt.started_at),
                "ended_at": json_time(attempt.ended_at),
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
    if step.kind == "set_attributes":
        return "-"  # the workflow's attributes are shown above
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
    if info.due_time is not None:
        fields.append(("due", due_text(info)))
    if info.debounce_key:
        fields.append(("debounce key", info.debounce_key))
    if info.attributes:
        fields.append(("attributes", attributes_text(info.attributes)))
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


def attributes_text(attributes: dict[str, str]) -> str:
    """Search attributes as `key=value` pairs, sorted by key."""
    return " ".join(f"{key}={value}" for key, value in sorted(attributes.items()))


def due_text(info: WorkflowInfo, now: datetime | None = None) -> str:
    """When a delayed or debounced workflow is due: the time, and while it waits for it
    (ENQUEUED), how long from now."""
    if info.due_time is None:
        return "-"
    text = local_time(info.due_time)
    if info.status is WorkflowStatus.ENQUEUED:
        left = (info.due_time - (now or datetime.now(timezone.utc))).total_seconds()
        text += f" (in {left:.1f}s)" if left > 0 else " (due)"
    return text


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
