"""The workflow list page: filters, counts per status, one page of rows."""

from __future__ import annotations

from datetime import datetime, timezone

from durable._core.specs import WorkflowStatus
from durable.ui.html import FINISHED, badge, e, layout, moment, query, took, workflow_url
from durable.ui.reads import COUNT_LIMIT, PREFIX_SCAN_LIMIT, Count, ListFilter, ListPage, Row


def filter_params(where: ListFilter, since: str, until: str) -> dict[str, object]:
    """The query parameters that reproduce these filters."""
    return {
        "status": [status.value for status in where.statuses],
        "name": where.name,
        "id": where.id_prefix,
        "since": since,
        "until": until,
    }


def _form(where: ListFilter, since: str, until: str) -> str:
    boxes = "".join(
        f'<label class="check"><input type="checkbox" name="status" value="{s.value}"'
        f"{' checked' if s in where.statuses else ''}> {s.value}</label>"
        for s in WorkflowStatus
    )
    return f"""<form class="filters" method="get" action="/" id="filters">
<fieldset><legend>Status</legend>{boxes}</fieldset>
<label>Name <input name="name" value="{e(where.name)}" placeholder="exact name"></label>
<label>ID prefix <input name="id" value="{e(where.id_prefix)}" placeholder="e.g. order-"></label>
<label>Created since <input name="since" value="{e(since)}"
 placeholder="1h, 2d or 2026-12-06T10:00"></label>
<label>until <input name="until" value="{e(until)}" placeholder="30m or an ISO time"></label>
<button type="submit">Filter</button> <a href="/">Clear</a>
</form>"""


def counts_html(counts: dict[WorkflowStatus, Count], params: dict[str, object]) -> str:
    """The counts bar: each status's count links to the list filtered by it."""
    links = []
    for status, count in counts.items():
        href = "/?" + query({**params, "status": [status.value]})
        links.append(
            f'<a class="count" href="{e(href)}" data-count="{e(status.value)}">'
            f"{badge(status)} <b>{e(count)}</b></a>"
        )
    note = (
        f'<span class="note" title="The API has no count call: each count reads at most '
        f'{COUNT_LIMIT} workflows (newest first)">counts read at most {COUNT_LIMIT} per status'
        "</span>"
    )
    return "".join(links) + note


def _duration(row: Row, now: datetime) -> str:
    info = row.info
    if info.status in FINISHED:
        return took((info.updated_at - info.created_at).total_seconds())
    return f"{took((now - info.created_at).total_seconds())} so far"


def row_html(r: Row, now: datetime, versions: bool) -> str:
    """One workflow's row (also sent alone by the live list, durable.ui.live.list_feed)."""
    return (
        f'<tr data-workflow-id="{e(r.info.workflow_id)}" data-status="{e(r.info.status.value)}">'
        f'<td><a href="{e(workflow_url(r.info.workflow_id))}">{e(r.info.workflow_id)}</a></td>'
        f"<td>{e(r.info.name)}</td><td>{badge(r.info.status)}</td>"
        f"<td>{e(r.info.queue_name or '')}</td>"
        + (f"<td>{e(r.version)}</td>" if versions else "")
        + f"<td>{moment(r.info.created_at)}</td><td>{moment(r.info.updated_at)}</td>"
        f"<td>{e(_duration(r, now))}</td></tr>"
    )


def _rows(rows: list[Row], now: datetime, versions: bool) -> str:
    if not rows:
        return '<tr class="empty-row"><td colspan="8" class="empty">No workflows match.</td></tr>'
    return "\n".join(row_html(r, now, versions) for r in rows)


def list_page(
    where: ListFilter,
    since: str,
    until: str,
    page: ListPage | None,
    *,
    token: str = "",
    banner: str = "",
) -> str:
    """The list page; `page` is None when it could not be read (the banner says why)."""
    params = filter_params(where, since, until)
    now = datetime.now(timezone.utc)
    counts_src = "/api/counts?" + query(params)
    body = [
        "<h1>Workflows</h1>",
        _form(where, since, until),
        f'<div id="counts" class="counts" data-src="{e(counts_src)}">counting…</div>',
    ]
    if page is not None:
        # The application version, where the coordinator records one for these workflows.
        versions = any(r.version for r in page.rows)
        version = "<th>Version</th>" if versions else ""
        # The first page follows WatchWorkflows (/live-list): new workflows appear on top
        # and rows change status in place, without a reload.
        live = ""
        if not token:
            src = "/live-list?" + query({**params, "versions": "1" if versions else ""})
            live = f' data-live-list="{e(src)}"'
        body.append(
            '<p class="note">List: <span id="list-live">'
            + ("connecting…" if live else "not live (a later page)")
            + "</span></p>"
            f'<table class="workflows"{live}><thead><tr><th>ID</th><th>Name</th>'
            f"<th>Status</th><th>Queue</th>{version}<th>Created</th><th>Updated</th>"
            f"<th>Duration</th></tr></thead><tbody>{_rows(page.rows, now, versions)}</tbody>"
            "</table>"
        )
        pager = []
        if token:
            pager.append(f'<a href="/?{e(query(params))}">First page</a>')
        if page.next_token:
            href = "/?" + query({**params, "page": page.next_token})
            pager.append(f'<a rel="next" href="{e(href)}">Next page</a>')
        if where.id_prefix:
            pager.append(
                f'<span class="note">ID prefix matched over {page.scanned} workflows read '
                f"(at most {PREFIX_SCAN_LIMIT} per page; the API filters by name, status "
                "and time, not by ID)</span>"
            )
        body.append(f'<nav class="pager">{" ".join(pager)}</nav>')
    return layout("Workflows", "\n".join(body), banner=banner)
