"""The async face's bulk actions and queue pause: `durable.aio.cancel_workflows`,
`resume_workflows`, `pause_queue`, `resume_queue` (see durable._bulk for the semantics)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from datetime import datetime

from durable._aio.client import AsyncClient, default_client
from durable._bulk import BulkProgress, BulkResult, Status, bulk_request, progress_of
from durable._queues import Queue, queue_name_of


async def _run(
    kind: str,
    filters: dict[str, object],
    dry_run: bool,
    match_all: bool,
    on_progress: Callable[[BulkProgress], object] | None,
    client: AsyncClient | None,
) -> BulkResult:
    method, request = bulk_request(kind, filters, dry_run, match_all)
    last = BulkProgress(0, 0, False)
    async for message in (client or default_client()).bulk_action(method, request):
        last = progress_of(message)
        if on_progress is not None:
            called = on_progress(last)
            if inspect.isawaitable(called):
                await called
    return BulkResult(last.matched, last.changed, dry_run)


async def cancel_workflows(
    *,
    status: Status = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    dry_run: bool = False,
    match_all: bool = False,
    on_progress: Callable[[BulkProgress], object] | None = None,
    client: AsyncClient | None = None,
) -> BulkResult:
    """As `durable.cancel_workflows`; `on_progress` may be a plain or an async function."""
    filters: dict[str, object] = dict(
        status=status,
        name=name,
        created_after=created_after,
        created_before=created_before,
        parent_workflow_id=parent_workflow_id,
        queue_name=queue_name,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    return await _run("cancel", filters, dry_run, match_all, on_progress, client)


async def resume_workflows(
    *,
    status: Status = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    dry_run: bool = False,
    match_all: bool = False,
    on_progress: Callable[[BulkProgress], object] | None = None,
    client: AsyncClient | None = None,
) -> BulkResult:
    """As `durable.resume_workflows`; `on_progress` may be a plain or an async function."""
    filters: dict[str, object] = dict(
        status=status,
        name=name,
        created_after=created_after,
        created_before=created_before,
        parent_workflow_id=parent_workflow_id,
        queue_name=queue_name,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    return await _run("resume", filters, dry_run, match_all, on_progress, client)


async def pause_queue(queue: Queue | str, *, client: AsyncClient | None = None) -> None:
    """As `durable.pause_queue`."""
    await (client or default_client()).set_queue_paused(queue_name_of(queue), True)


async def resume_queue(queue: Queue | str, *, client: AsyncClient | None = None) -> None:
    """As `durable.resume_queue`."""
    await (client or default_client()).set_queue_paused(queue_name_of(queue), False)
