"""Cron schedules from asyncio code: the twins of durable._schedules, on an AsyncClient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from durable._aio.client import AsyncClient, default_client
from durable._aio.workflows import AsyncWorkflowHandle
from durable._core import schedules
from durable._core.schedules import CatchUp, ScheduleInfo
from durable._schedules import workflow_name


async def set_schedule(
    name: str,
    cron: str,
    workflow: Callable[..., Any] | str,
    *args: Any,
    time_zone: str = "UTC",
    queue: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    catch_up: CatchUp = "skip",
    client: AsyncClient | None = None,
    **kwargs: Any,
) -> ScheduleInfo:
    """As durable.set_schedule."""
    spec = schedules.spec_message(
        name,
        cron,
        workflow_name(workflow),
        time_zone=time_zone,
        args=args,
        kwargs=kwargs,
        queue=queue or "",
        start_time=start_time,
        end_time=end_time,
        catch_up=catch_up,
    )
    reply = await (client or default_client()).set_schedule(spec)
    return schedules.info(reply.schedule)


async def get_schedule(name: str, *, client: AsyncClient | None = None) -> ScheduleInfo:
    reply = await (client or default_client()).get_schedule(name)
    return schedules.info(reply.schedule, tuple(reply.warnings))


async def list_schedules(
    workflow: Callable[..., Any] | str | None = None, *, client: AsyncClient | None = None
) -> AsyncIterator[ScheduleInfo]:
    """Every schedule (of `workflow`, if given), by name, a page at a time."""
    client = client or default_client()
    name = workflow_name(workflow) if workflow is not None else ""
    token = ""
    while True:
        page = await client.list_schedules(page_token=token, workflow_name=name)
        for schedule in page.schedules:
            yield schedules.info(schedule)
        token = page.next_page_token
        if not token:
            return


async def pause_schedule(name: str, *, client: AsyncClient | None = None) -> ScheduleInfo:
    return schedules.info(await (client or default_client()).pause_schedule(name))


async def resume_schedule(name: str, *, client: AsyncClient | None = None) -> ScheduleInfo:
    return schedules.info(await (client or default_client()).resume_schedule(name))


async def delete_schedule(name: str, *, client: AsyncClient | None = None) -> bool:
    return await (client or default_client()).delete_schedule(name)


async def trigger_schedule(
    name: str, *, client: AsyncClient | None = None
) -> AsyncWorkflowHandle[Any]:
    client = client or default_client()
    workflow = await client.trigger_schedule(name)
    return AsyncWorkflowHandle(workflow.workflow_id, client)
