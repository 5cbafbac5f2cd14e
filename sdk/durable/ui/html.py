"""Small HTML building blocks shared by the dashboard's pages: escaping, times, durations,
values, status badges and the page layout. Every page is rendered on the server; the
bundled script only swaps in fragments the live feed sends, rendered here too."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from durable._core.specs import WorkflowStatus
from durable._management import FailureInfo
from durable._payloads import RawPayload

FINISHED = frozenset(
    {
        WorkflowStatus.SUCCESS,
        WorkflowStatus.ERROR,
        WorkflowStatus.CANCELLED,
        WorkflowStatus.DEAD_LETTER,
    }
)
# How much of a value a table cell shows; the workflow page shows all of it.
CELL_CHARS = 80


def e(text: object) -> str:
    """`text` escaped for HTML text and attribute values."""
    return escape(str(text), quote=True)


def workflow_url(workflow_id: str) -> str:
    return "/workflows/" + quote(workflow_id, safe="")


def query(params: dict[str, Any]) -> str:
    """A query string of the non-empty parameters (lists repeat their key)."""
    pairs = [
        (key, item)
        for key, value in params.items()
        for item in (value if isinstance(value, list | tuple) else [value])
        if item not in (None, "")
    ]
    return urlencode(pairs)


def plain(value: Any) -> Any:
    """A decoded payload as a JSON value (bytes of other encodings as base64)."""
    if isinstance(value, RawPayload):
        return {"encoding": value.encoding, "data_base64": base64.b64encode(value.data).decode()}
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(plain(value), ensure_ascii=False, indent=indent)


def short(text: str, width: int = CELL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def moment(value: datetime | None) -> str:
    """A time in a <time> element: UTC on the server, local time once the script runs."""
    if value is None:
        return "-"
    utc = value.astimezone(timezone.utc)
    return (
        f'<time datetime="{e(utc.isoformat())}">{e(utc.strftime("%Y-%m-%d %H:%M:%S"))} UTC</time>'
    )


def took(seconds: float) -> str:
    """A duration for people: 0.42s, 12.3s, 4m 05s, 2h 10m, 3d 4h."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def badge(status: WorkflowStatus) -> str:
    return (
        f'<span class="status status-{e(status.value)}" data-status="{e(status.value)}">'
        f"{e(status.value)}</span>"
    )


def failure_text(failure: FailureInfo) -> str:
    return f"{failure.type}: {failure.message}" if failure.message else failure.type


def progress(value: Any) -> float | None:
    """A number from 0 to 100 is shown as a progress bar too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 100 and math.isfinite(value) else None


def value_html(value: Any) -> str:
    """An event's (or any JSON) value: a bar with the number for 0-100, else the JSON."""
    percent = progress(value)
    text = f'<code class="json">{e(to_json(value))}</code>'
    if percent is None:
        return text
    return (
        f'<span class="bar" role="progressbar" aria-valuenow="{percent:g}" '
        f'aria-valuemin="0" aria-valuemax="100"><span style="width:{percent:g}%"></span>'
        f"</span> {text}"
    )


def json_block(value: Any) -> str:
    return f'<pre class="json">{e(to_json(value, indent=2))}</pre>'


def layout(title: str, body: str, *, banner: str = "", live: str = "") -> str:
    """A whole page. `banner`: an error shown above the content; `live`: the URL of the
    page's live feed (server-sent events), if it has one."""
    live_attr = f' data-live="{e(live)}"' if live else ""
    hidden = "" if banner else " hidden"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · durable</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body{live_attr}>
<header class="top"><a class="brand" href="/">durable</a>
<nav><a href="/">Workflows</a></nav><span id="live-state" class="live-state"></span></header>
<div id="banner" class="banner" role="alert"{hidden}>{banner}</div>
<main>
{body}
</main>
</body>
</html>
"""


def error_page(title: str, message: str) -> str:
    body = (
        f'<h1>{e(title)}</h1><p class="problem">{e(message)}</p>'
        '<p><a href="/">All workflows</a></p>'
    )
    return layout(title, body)
