"""The workflow page: its summary, the step timeline (a Gantt chart of the steps), its
messages, child workflows and events, and the actions. Each part is a fragment the live
feed sends again when it changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from durable._core.specs import WorkflowStatus
from durable._management import StepInfo
from durable.ui.html import (
    FINISHED,
    badge,
    e,
    failure_text,
    json_block,
    layout,
    moment,
    short,
    to_json,
    took,
    value_html,
    workflow_url,
)
from durable.ui.reads import CHILD_LIMIT, STEP_LIMIT, Row, Steps

# The Gantt chart's drawing, in SVG user units.
_WIDTH = 1000
_LABEL = 250
_ROW = 22
_BAR = 14
_AXIS = 24


def _link(workflow_id: str) -> str:
    return f'<a href="{e(workflow_url(workflow_id))}">{e(workflow_id)}</a>'


def summary(row: Row, now: datetime | None = None) -> str:
    """The workflow's fields, input and result."""
    info = row.info
    now = now or datetime.now(timezone.utc)
    end = info.updated_at if info.status in FINISHED else now
    fields: list[tuple[str, str]] = [
        ("Status", badge(info.status)),
        ("Name", e(info.name)),
        ("Created", moment(info.created_at)),
        ("Updated", moment(info.updated_at)),
        ("Duration", e(took((end - info.created_at).total_seconds()))),
    ]
    if row.version:
        fields.append(("Version", e(row.version)))
    if row.schedule:
        fields.append(("Schedule", e(row.schedule)))
    if info.queue_name:
        fields.append(("Queue", f"{e(info.queue_name)} (priority {info.priority})"))
    if info.deduplication_id:
        fields.append(("Deduplication ID", e(info.deduplication_id)))
    if info.executor_id:
        fields.append(("Executor", e(info.executor_id)))
    fields.append(("Recoveries", str(info.recovery_attempts)))
    if info.deadline is not None:
        fields.append(("Deadline", moment(info.deadline)))
    if info.parent_workflow_id:
        fields.append(("Parent", _link(info.parent_workflow_id)))
    if info.forked_from:
        fields.append(("Forked from", _link(info.forked_from)))
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in fields)
    parts = [f'<dl class="fields">{items}</dl>', "<h3>Input</h3>", json_block(info.input)]
    if info.status is WorkflowStatus.SUCCESS:
        parts += ["<h3>Output</h3>", json_block(info.output)]
    if info.error is not None:
        details = row.failure_details
        parts += [
            "<h3>Error</h3>",
            f'<pre class="failure">{e(failure_text(info.error))}</pre>',
            f"<details><summary>Details</summary><pre>{e(details)}</pre></details>"
            if details
            else "",
        ]
    return f'<div data-workflow-status="{e(info.status.value)}">{"".join(parts)}</div>'


def _outcome(step: StepInfo) -> str:
    if step.error is not None:
        return f'<span class="bad">{e(short(failure_text(step.error)))}</span>'
    if step.kind == "set_event":
        return "<span class=note>see Events</span>"
    if step.timed_out:
        return '<span class="warn">timed out</span>'
    if step.kind == "sleep" and step.deadline is not None:
        return f"until {moment(step.deadline)}"
    if step.kind == "start_workflow" and isinstance(step.output, str):
        return "child " + _link(step.output)
    return f'<code class="json">{e(short(to_json(step.output)))}</code>'


def _css_class(step: StepInfo) -> str:
    if step.error is not None:
        return "error"
    if step.timed_out:
        return "timed-out"
    return {"set_event": "event", "sleep": "wait", "recv": "wait", "get_event": "wait"}.get(
        step.kind, "ok"
    )


def _spans(steps: Sequence[StepInfo], start: datetime) -> list[tuple[datetime, datetime]]:
    """Each step's bar: from its attempt's start (else the previous step's end) to its
    record time."""
    spans = []
    previous = start
    for step in steps:
        first = step.failed_attempts[0].started_at if step.failed_attempts else None
        begin = first or step.started_at or previous
        spans.append((min(begin, step.recorded_at), step.recorded_at))
        previous = step.recorded_at
    return spans


def gantt(steps: Sequence[StepInfo], start: datetime, end: datetime) -> str:
    """The steps as bars on one time axis from `start` (the workflow's creation) to `end`
    (its last change, or now while it runs), failed attempts drawn in their own color."""
    spans = _spans(steps, start)
    end = max([end, *(stop for _, stop in spans)])
    total = max((end - start).total_seconds(), 1e-3)
    area = _WIDTH - _LABEL - 10

    def x(moment_: datetime) -> float:
        return _LABEL + area * max(0.0, (moment_ - start).total_seconds()) / total

    height = _AXIS + _ROW * len(steps) + 4
    out = [
        f'<svg class="gantt" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'role="img" aria-label="step timeline">'
    ]
    for i in range(5):
        tick = _LABEL + area * i / 4
        label = "+" + took(total * i / 4)
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        out.append(
            f'<line class="tick" x1="{tick:.1f}" y1="{_AXIS - 6}" x2="{tick:.1f}" y2="{height}"/>'
            f'<text class="axis" x="{tick:.1f}" y="{_AXIS - 10}" text-anchor="{anchor}">'
            f"{e(label)}</text>"
        )
    for index, (step, (begin, stop)) in enumerate(zip(steps, spans, strict=True)):
        y = _AXIS + _ROW * index
        left, right = x(begin), x(stop)
        width = max(right - left, 2.0)
        label = f"{step.step_id}. {step.name or step.kind}"
        if step.attempts > 1:
            label += f" x{step.attempts}"
        tip = (
            f"step {step.step_id} {step.name} ({step.kind}), {step.attempts} attempt(s), "
            f"{took((stop - begin).total_seconds())}"
        )
        out.append(
            f'<g class="step step-{_css_class(step)}" data-step-id="{step.step_id}">'
            f"<title>{e(tip)}</title>"
            f'<text class="label" x="4" y="{y + _BAR}">{e(short(label, 34))}</text>'
            f'<rect x="{left:.1f}" y="{y + 3}" width="{width:.1f}" height="{_BAR}" rx="2"/>'
        )
        for attempt in step.failed_attempts:
            if attempt.started_at is None or attempt.ended_at is None:
                continue
            a_left = x(attempt.started_at)
            a_width = max(x(attempt.ended_at) - a_left, 2.0)
            out.append(
                f'<rect class="attempt" x="{a_left:.1f}" y="{y + 3}" width="{a_width:.1f}" '
                f'height="{_BAR}" rx="2"/>'
            )
        # The duration right of the bar, or left of it when the bar reaches the end.
        after = right + 60 < _WIDTH
        out.append(
            f'<text class="took" x="{right + 4 if after else left - 4:.1f}" y="{y + _BAR}" '
            f'text-anchor="{"start" if after else "end"}">'
            f"{e(took((stop - begin).total_seconds()))}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _step_rows(steps: Sequence[StepInfo], spans: list[tuple[datetime, datetime]]) -> str:
    rows = []
    for step, (begin, stop) in zip(steps, spans, strict=True):
        rows.append(
            f'<tr data-step-id="{step.step_id}"><td>{step.step_id}</td><td>{e(step.name)}</td>'
            f"<td>{e(step.kind)}</td><td>{step.attempts}</td>"
            f"<td>{e(took((stop - begin).total_seconds()))}</td><td>{_outcome(step)}</td>"
            f"<td>{moment(step.recorded_at)}</td></tr>"
        )
        for attempt in step.failed_attempts:
            rows.append(
                f'<tr class="attempt-row"><td></td><td colspan="6">attempt {attempt.attempt} '
                f"failed at {moment(attempt.ended_at)}: "
                f"{e(short(failure_text(attempt.error)))}</td></tr>"
            )
    return "".join(rows)


def _messages(steps: Sequence[StepInfo]) -> str:
    sent = [s for s in steps if s.kind in ("send", "recv")]
    if not sent:
        return '<p class="note">No messages sent or received.</p>'
    rows = "".join(
        f"<tr><td>{s.step_id}</td><td>{'sent' if s.kind == 'send' else 'received'}</td>"
        f"<td>{e(s.name or '(default)')}</td>"
        f"<td>{'timed out' if s.timed_out else value_html(s.output)}</td>"
        f"<td>{moment(s.recorded_at)}</td></tr>"
        for s in sent
    )
    return (
        '<table class="messages"><thead><tr><th>Step</th><th></th><th>Topic</th>'
        f"<th>Message</th><th>At</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def timeline(row: Row, steps: Steps, now: datetime | None = None) -> str:
    """The steps: the Gantt chart, the table, and the messages among them."""
    info = row.info
    now = now or datetime.now(timezone.utc)
    if not steps.steps:
        body = '<p class="note">No steps recorded yet.</p>'
    else:
        end = info.updated_at if info.status in FINISHED else now
        spans = _spans(steps.steps, info.created_at)
        body = (
            gantt(steps.steps, info.created_at, end)
            + '<table class="steps"><thead><tr><th>#</th><th>Name</th><th>Kind</th>'
            "<th>Attempts</th><th>Took</th><th>Outcome</th><th>Recorded</th></tr></thead>"
            f"<tbody>{_step_rows(steps.steps, spans)}</tbody></table>"
        )
    if steps.truncated:
        body += f'<p class="note">Showing the first {STEP_LIMIT} steps only.</p>'
    return (
        f'<h2>Steps <span class="count-note">({len(steps.steps)})</span></h2>{body}'
        f"<h2>Messages</h2>{_messages(steps.steps)}"
    )


def children(rows: list[Row], more: bool) -> str:
    if not rows:
        return '<p class="note">No child workflows.</p>'
    items = "".join(
        f"<li>{_link(r.info.workflow_id)} {e(r.info.name)} {badge(r.info.status)}</li>"
        for r in rows
    )
    extra = f'<p class="note">Showing the newest {CHILD_LIMIT}.</p>' if more else ""
    return f'<ul class="children">{items}</ul>{extra}'


def event_block(key: str, value: Any, version: int, set_at: datetime | None) -> str:
    """An event: its current value and version, and a history list the live feed fills
    (from version 1, through GetEvent's follow from the first value)."""
    return (
        f'<section class="event" data-event-key="{e(key)}" data-version="{version}">'
        f'<h3><code>{e(key)}</code> <span class="event-version">v{version}</span></h3>'
        f'<div class="event-value">{value_html(value)}</div>'
        f'<div class="event-time">{moment(set_at)}</div>'
        '<details class="history" open><summary>Versions</summary><ol class="versions"></ol>'
        "</details></section>"
    )


def version_item(version: int, value: Any, set_at: datetime | None) -> str:
    return (
        f'<li data-version="{version}"><span class="event-version">v{version}</span> '
        f"{value_html(value)} <span class=note>{moment(set_at)}</span></li>"
    )


def workflow_page(
    row: Row,
    steps: Steps,
    kids: tuple[list[Row], bool],
    events: list[tuple[str, Any, int, datetime | None]],
) -> str:
    info = row.info
    blocks = "".join(event_block(*event) for event in events)
    body = f"""<h1 class="workflow-id">{e(info.workflow_id)}</h1>
<section class="actions" data-workflow-id="{e(info.workflow_id)}">
<button type="button" data-action="cancel">Cancel</button>
<button type="button" data-action="resume">Resume</button>
<label>Fork from step <input name="step" type="number" min="1" value="1"></label>
<button type="button" data-action="fork">Fork</button>
<output id="action-result" role="status"></output>
</section>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>
<button value="no" type="submit">Keep it</button>
<button value="yes" type="submit" id="confirm-yes">Yes</button></form></dialog>
<div class="columns">
<div class="main-column">
<section id="summary">{summary(row)}</section>
<section id="timeline">{timeline(row, steps)}</section>
</div>
<aside class="side-column">
<h2>Events</h2>
<div id="events">{blocks or '<p class="note none">No events set.</p>'}</div>
<h2>Child workflows</h2>
<div id="children">{children(*kids)}</div>
</aside>
</div>"""
    live = "/live/" + workflow_url(info.workflow_id).removeprefix("/workflows/")
    return layout(info.workflow_id, body, live=live)
