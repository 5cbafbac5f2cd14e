"""Watching workflows, the async face: `durable.aio.watch_workflows`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

from durable._aio.client import AsyncClient, default_client
from durable._core.specs import WorkflowStatus
from durable._watch import WorkflowChange, change, watch_request


async def watch_workflows(
    *,
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
    name: str | None = None,
    queue_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    parent_workflow_id: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    after: str | None = None,
    timeout: float | None = None,
    client: AsyncClient | None = None,
) -> AsyncIterator[WorkflowChange]:
    """As `durable.watch_workflows`, an async iterator: `async for change in ...`."""
    where = watch_request(
        status, name, queue_name, attributes, parent_workflow_id, app_version, schedule_name
    )
    messages = (client or default_client()).watch_workflows(
        where, after=after or "", timeout=timeout
    )
    async with contextlib.aclosing(messages):  # type: ignore[type-var]
        async for message in messages:
            if message.HasField("change"):
                yield change(message.change)
