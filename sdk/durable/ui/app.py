"""The dashboard's ASGI app (Starlette) and its server (uvicorn).

Pages: `/` (the workflow list), `/workflows/{id}` (one workflow). The workflow page
subscribes to `/live/{id}`, its live feed (server-sent events, see durable.ui.live); the
list's first page to `/live-list`, fed by WatchWorkflows. The
buttons post to `/actions/{cancel,resume,fork}`. Everything the page needs is served from
`/static`; nothing comes from elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import webbrowser
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durable import _payloads
from durable._aio.client import AsyncClient
from durable._core.specs import WorkflowStatus
from durable.cli import parse_since
from durable.errors import DurableError
from durable.ui import detail, listing, live, reads
from durable.ui.html import e, error_page, layout, workflow_url
from durable.ui.problems import Problem, problem

STATIC = Path(__file__).parent / "static"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _banner(found: Problem) -> str:
    return f'<span data-kind="{e(found.kind)}">{e(found.message)}</span>'


def _filters(request: Request) -> tuple[reads.ListFilter, str, str, str]:
    """The list's filters from the query string, and a problem with them ("" if none)."""
    params = request.query_params
    statuses = []
    for text in params.getlist("status"):
        with contextlib.suppress(ValueError):
            statuses.append(WorkflowStatus(text.upper()))
    since, until = params.get("since", "").strip(), params.get("until", "").strip()
    times: list[datetime | None] = []
    bad = ""
    for label, text in (("since", since), ("until", until)):
        try:
            times.append(parse_since(text) if text else None)
        except argparse.ArgumentTypeError as error:
            times.append(None)
            bad = f"Created {label}: {error}"
    where = reads.ListFilter(
        statuses=tuple(statuses),
        name=params.get("name", "").strip(),
        id_prefix=params.get("id", "").strip(),
        created_after=times[0],
        created_before=times[1],
    )
    return where, since, until, bad


def loopback_hosts(host: str) -> list[str] | None:
    """The Host headers a dashboard served on `host` answers: its own loopback names when
    it listens on loopback only (so a web page whose DNS name is rebound to 127.0.0.1
    cannot read it or act through it), any otherwise (None)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return ["127.0.0.1", "localhost", "[::1]", "::1"]
    return None


def create_app(client: AsyncClient, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The dashboard around `client` (used from the server's event loop only, and closed
    when the app shuts down). `allowed_hosts`: the Host headers it answers (None: any)."""

    def failed(error: DurableError) -> Problem:
        return problem(error, client.target)

    async def workflows(request: Request) -> Response:
        where, since, until, bad = _filters(request)
        token = request.query_params.get("page", "")
        if bad:
            html = listing.list_page(where, since, until, None, banner=e(bad))
            return HTMLResponse(html, status_code=400)
        try:
            page = await reads.list_page(client, where, token)
        except DurableError as error:
            found = failed(error)
            html = listing.list_page(where, since, until, None, banner=_banner(found))
            return HTMLResponse(html, status_code=found.status)
        return HTMLResponse(listing.list_page(where, since, until, page, token=token))

    async def counts(request: Request) -> Response:
        where, since, until, _ = _filters(request)
        try:
            found = await reads.status_counts(client, where)
        except DurableError as error:
            trouble = failed(error)
            return HTMLResponse(
                f'<span class="problem">{e(trouble.message)}</span>', trouble.status
            )
        params = listing.filter_params(where, since, until)
        return HTMLResponse(listing.counts_html(found, params))

    async def ping(request: Request) -> Response:
        try:
            await client.list_workflows(reads.ListFilter().request(1))
        except DurableError as error:
            found = failed(error)
            return JSONResponse({"ok": False, "message": found.message}, found.status)
        return JSONResponse({"ok": True})

    async def workflow(request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        steps = reads.Steps()
        try:
            message, _, kids, events = await asyncio.gather(
                client.get_workflow(workflow_id),
                steps.read_more(client, workflow_id),
                reads.children(client, workflow_id),
                client.list_events(workflow_id),
            )
        except DurableError as error:
            found = failed(error)
            if found.kind == "not_found":
                html = error_page(
                    "Workflow not found", f"There is no workflow with the ID {workflow_id!r}."
                )
            else:
                html = layout(workflow_id, f"<h1>{e(workflow_id)}</h1>", banner=_banner(found))
            return HTMLResponse(html, status_code=found.status)
        values = [
            (
                event.key,
                _payloads.decode_or_raw(event.value.value),
                event.value.version,
                live.set_time(event.value),
            )
            for event in events
        ]
        return HTMLResponse(detail.workflow_page(reads.row(message), steps, kids, values))

    async def feed(request: Request) -> Response:
        return StreamingResponse(
            live.feed(client, request.path_params["workflow_id"]),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )

    async def list_feed(request: Request) -> Response:
        where, _, _, _ = _filters(request)
        versions = bool(request.query_params.get("versions"))
        after = request.headers.get("last-event-id", "")
        return StreamingResponse(
            live.list_feed(client, where, versions, after),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )

    async def action(request: Request) -> Response:
        # JSON only: a cross-site form cannot send it without a CORS preflight, which this
        # app never grants, so another web page cannot act through the dashboard.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "message": "send JSON"}, 415)
        body: dict[str, Any] = await request.json()
        workflow_id = str(body.get("workflow_id", ""))
        name = request.path_params["action"]
        try:
            if name == "cancel":
                row = reads.row(await client.cancel_workflow(workflow_id))
                said = f"Cancel requested: the workflow is {row.info.status.value}."
            elif name == "resume":
                row = reads.row(await client.resume_workflow(workflow_id))
                said = f"Resumed: the workflow is {row.info.status.value}."
            elif name == "fork":
                step = int(body.get("step") or 1)
                forked = reads.row(await client.fork_workflow(workflow_id, step))
                return JSONResponse(
                    {
                        "ok": True,
                        "message": f"Forked from step {step} as {forked.info.workflow_id} "
                        f"({forked.info.status.value}).",
                        "url": workflow_url(forked.info.workflow_id),
                    }
                )
            else:
                return JSONResponse({"ok": False, "message": f"unknown action {name!r}"}, 404)
        except (ValueError, TypeError):
            return JSONResponse({"ok": False, "message": "the step must be a number"}, 400)
        except DurableError as error:
            found = failed(error)
            return JSONResponse({"ok": False, "message": found.message}, found.status)
        return JSONResponse({"ok": True, "message": said, "summary": detail.summary(row)})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        title = "Page not found" if status == 404 else f"HTTP {status}"
        return HTMLResponse(error_page(title, f"Nothing is served at {request.url.path}."), status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.close()

    routes = [
        Route("/", workflows),
        Route("/api/counts", counts),
        Route("/api/ping", ping),
        Route("/workflows/{workflow_id:path}", workflow),
        Route("/live/{workflow_id:path}", feed),
        Route("/live-list", list_feed),
        Route("/actions/{action}", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found},
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one), bound before serving so that a port in
    use is reported plainly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def server(client: AsyncClient, sock: socket.socket | None = None) -> uvicorn.Server:
    """The uvicorn server of the dashboard; given the socket it will serve on, it answers
    only that socket's loopback names when that is loopback (see loopback_hosts)."""
    hosts = loopback_hosts(sock.getsockname()[0]) if sock is not None else None
    app = create_app(client, allowed_hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    return uvicorn.Server(config)


def serve(
    client: AsyncClient,
    sock: socket.socket,
    *,
    open_browser: bool = False,
    announce: Callable[[str], None] = print,
) -> int:
    """Serve the dashboard on `sock` until interrupted; returns the exit status."""
    url = url_of(sock)
    announce(f"serving {url} (coordinator {client.target}); Ctrl-C stops it")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    # uvicorn stops gracefully on Ctrl-C, then raises it again: stopping is the point.
    with contextlib.suppress(KeyboardInterrupt):
        server(client, sock).run(sockets=[sock])
    announce("stopped")
    return 0
