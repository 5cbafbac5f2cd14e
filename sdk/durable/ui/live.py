"""A workflow page's live feed: server-sent events fed by the coordinator's own waits.

- Every event key is followed with GetEvent `follow` from its first value: the page gets
  each key's whole version history, then every new value the moment it is set.
- While the workflow runs, AwaitWorkflow waits for it to finish; when it does, the page
  gets its final status, output or error.
- Steps have no watch stream in the public API. While the workflow runs, the feed asks
  ListSteps for the steps *after the last one it has* (one indexed read of the new rows
  only, of this one workflow): at once when an event value arrives (a SetEvent is a step),
  and otherwise at most once per STEP_REFRESH_SECONDS. It stops when the workflow
  finishes. The list of workflows is never polled.

Messages: `summary`, `steps`, `children` (HTML fragments replacing a part of the page),
`value` (JSON: one version of an event), `problem` (JSON: why the feed stopped; the browser
reconnects), `end` (the workflow finished and everything was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from durable import _payloads
from durable._aio.client import AsyncClient
from durable._watch import change as watch_change
from durable._watch import watch_request
from durable.errors import DurableError
from durable.ui import detail, html, listing, reads
from durable.ui.html import FINISHED
from durable.ui.problems import problem
from durable.v1 import coordinator_pb2 as pb

STEP_REFRESH_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
# How long one feed follows; the browser then reconnects and gets a fresh one.
FOLLOW_SECONDS = 3600.0
# How long one AwaitWorkflow waits before it is made again.
AWAIT_SECONDS = 300.0
# The browser's pause before it reconnects a broken feed.
RECONNECT_MILLISECONDS = 2000


def sse(event: str, data: str) -> str:
    """One server-sent event."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n"


def set_time(event: pb.EventValue) -> datetime | None:
    """When the value was set (None if the coordinator did not say)."""
    if not event.HasField("set_time"):
        return None
    return event.set_time.ToDatetime(tzinfo=timezone.utc)


class _Feed:
    """One page's feed: the follow streams and waits it runs, merged into one queue."""

    def __init__(self, client: AsyncClient, workflow_id: str) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.followed: set[str] = set()
        self.following = 0  # follow streams not ended yet
        self.steps = reads.Steps()

    def spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            try:
                await work()
            except DurableError as error:
                await self.queue.put(("error", error))
            except Exception as error:  # never a feed that silently stops updating
                await self.queue.put(("error", DurableError(f"{type(error).__name__}: {error}")))

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def follow(self, key: str) -> None:
        """Follow event `key` from its first value, once."""
        if key in self.followed:
            return
        self.followed.add(key)
        self.following += 1

        async def work() -> None:
            stream = self.client.get_event(
                self.workflow_id, key, FOLLOW_SECONDS, follow=True, from_first=True
            )
            try:
                async for message in stream:
                    if message.HasField("event"):
                        await self.queue.put(("value", (key, message.event)))
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            await self.queue.put(("followed", key))

        self.spawn(work)

    def await_finish(self) -> None:
        async def work() -> None:
            while True:
                reply = await self.client.await_workflow(self.workflow_id, AWAIT_SECONDS)
                if not reply.timed_out:
                    await self.queue.put(("finished", reply.workflow))
                    return

        self.spawn(work)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def new_steps(self, row: reads.Row) -> list[str]:
        """Read the steps recorded since the last read; the messages for what changed."""
        new = await self.steps.read_more(self.client, self.workflow_id)
        if not new:
            return []
        for step in new:
            if step.kind == "set_event":
                self.follow(step.name)
        chunks = [sse("steps", detail.timeline(row, self.steps))]
        if any(step.kind == "start_workflow" for step in new):
            kids = await reads.children(self.client, self.workflow_id)
            chunks.append(sse("children", detail.children(*kids)))
        return chunks


def _value(key: str, event: pb.EventValue) -> str:
    value = _payloads.decode_or_raw(event.value)
    set_at = set_time(event)
    return json.dumps(
        {
            "key": key,
            "version": event.version,
            "value": html.value_html(value),
            "time": html.moment(set_at),
            "item": detail.version_item(event.version, value, set_at),
            "block": detail.event_block(key, value, event.version, set_at),
        }
    )


async def feed(client: AsyncClient, workflow_id: str) -> AsyncIterator[str]:
    """The live feed of one workflow page, as server-sent events."""
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
    state = _Feed(client, workflow_id)
    try:
        row = reads.row(await client.get_workflow(workflow_id))
        running = row.info.status not in FINISHED
        yield sse("summary", detail.summary(row))
        for chunk in await state.new_steps(row):
            yield chunk
        for event in await client.list_events(workflow_id):
            state.follow(event.key)
        if running:
            state.await_finish()
        refresh_at = time.monotonic() + STEP_REFRESH_SECONDS
        keepalive_at = time.monotonic() + KEEPALIVE_SECONDS
        while running or state.following:
            due = min(refresh_at, keepalive_at) if running else keepalive_at
            try:
                kind, item = await asyncio.wait_for(
                    state.queue.get(), max(due - time.monotonic(), 0.0)
                )
            except asyncio.TimeoutError:
                kind, item = "tick", None
            if kind == "error":
                raise item
            if kind == "value":
                yield sse("value", _value(*item))
                refresh_at = time.monotonic()  # its SetEvent step is new: show it now
            elif kind == "followed":
                state.following -= 1
            elif kind == "finished":
                running = False
                row = reads.row(item)
                await state.new_steps(row)
                yield sse("summary", detail.summary(row))
                yield sse("steps", detail.timeline(row, state.steps))
            if running and time.monotonic() >= refresh_at:
                chunks = await state.new_steps(row)
                if chunks:  # the workflow changed too (status, executor, update time)
                    row = reads.row(await client.get_workflow(workflow_id))
                    chunks.insert(0, sse("summary", detail.summary(row)))
                for chunk in chunks:
                    yield chunk
                refresh_at = time.monotonic() + STEP_REFRESH_SECONDS
            if time.monotonic() >= keepalive_at:
                yield ": keepalive\n\n"
                keepalive_at = time.monotonic() + KEEPALIVE_SECONDS
        yield sse("end", row.info.status.value)
    except DurableError as error:
        found = problem(error, client.target)
        yield sse("problem", json.dumps({"kind": found.kind, "message": found.message}))
    finally:
        await state.close()


async def list_feed(
    client: AsyncClient, where: reads.ListFilter, versions: bool, after: str = ""
) -> AsyncIterator[str]:
    """The list page's live feed: a `row` event (JSON: the workflow's ID and its row's HTML,
    or `remove` when it no longer matches the status filter) per status change, from
    WatchWorkflows filtered by name. Each event's `id` is the change's cursor, so the
    browser's automatic reconnect (Last-Event-ID, passed here as `after`) misses nothing."""
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=256)

    async def watch() -> None:
        request = watch_request(None, where.name or None, None, None, None, None, None)
        stream = client.watch_workflows(request, after=after, timeout=FOLLOW_SECONDS)
        try:
            async for message in stream:
                if message.HasField("change"):
                    await queue.put(("change", message.change))
            await queue.put(("end", None))
        except DurableError as error:
            await queue.put(("error", error))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    task = asyncio.get_running_loop().create_task(watch())
    try:
        yield ": watching\n\n"
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            if kind == "end":
                return
            if kind == "error":
                found = problem(item, client.target)
                yield sse("problem", json.dumps({"kind": found.kind, "message": found.message}))
                return
            changed = watch_change(item)
            info = changed.workflow
            if not where.matches(item.workflow) or (
                where.created_before is not None and info.created_at >= where.created_before
            ):
                continue
            shown = not where.statuses or changed.status in where.statuses
            data: dict[str, Any] = {"workflow_id": changed.workflow_id, "remove": not shown}
            if shown:
                now = datetime.now(timezone.utc)
                data["html"] = listing.row_html(reads.row(item.workflow), now, versions)
            yield f"id: {changed.cursor}\n" + sse("row", json.dumps(data))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
