"""Running a deployment for months from asyncio code: the twins of durable._operations, on
an AsyncClient."""

from __future__ import annotations

from durable._aio.client import AsyncClient, default_client
from durable._core.durations import Seconds, optional_seconds
from durable._operations import RetentionPolicy, retention_policy

# --- retention and DeleteWorkflow ---------------------------------------------------------


async def set_retention(
    finished_after: Seconds | None, *, client: AsyncClient | None = None
) -> RetentionPolicy:
    """As durable.set_retention."""
    seconds = optional_seconds(finished_after)
    return retention_policy(await (client or default_client()).set_retention(seconds))


async def get_retention(*, client: AsyncClient | None = None) -> RetentionPolicy:
    """As durable.get_retention."""
    return retention_policy(await (client or default_client()).get_retention())


async def delete_workflow(
    workflow_id: str, include_children: bool = False, *, client: AsyncClient | None = None
) -> int:
    """As durable.delete_workflow."""
    return await (client or default_client()).delete_workflow(workflow_id, include_children)
