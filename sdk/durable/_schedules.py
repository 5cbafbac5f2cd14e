"""Cron schedules from Python (sync face): set, read, pause, resume, delete and trigger the
coordinator's schedules, and the running workflow's scheduled time. The async face's twins
are in durable.aio; both build and read the same messages (`durable._core.schedules`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from durable._client import Client, default_client
from durable._core import schedules
from durable._core.context import current
from durable._core.schedules import CatchUp, ScheduleInfo
from durable._core.specs import spec_of
from durable._workflow import WorkflowHandle
from durable.errors import NotInWorkflowError


def workflow_name(workflow: Callable[..., Any] | str) -> str:
    """The name a schedule starts: a `@durable.workflow` function's, or a name as given
    (a workflow another language's worker runs)."""
    return workflow if isinstance(workflow, str) else spec_of(workflow).name


def set_schedule(
    name: str,
    cron: str,
    workflow: Callable[..., Any] | str,
    *args: Any,
    time_zone: str = "UTC",
    queue: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    catch_up: CatchUp = "skip",
    client: Client | None = None,
    **kwargs: Any,
) -> ScheduleInfo:
    """Create schedule `name`, or update it in place: start `workflow(*args, **kwargs)` at
    every tick of `cron` (5 fields, or 6 with seconds first) read in `time_zone`."""
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
    reply = (client or default_client()).set_schedule(spec)
    return schedules.info(reply.schedule)


def get_schedule(name: str, *, client: Client | None = None) -> ScheduleInfo:
    """Schedule `name` with its next ticks and warnings (ScheduleNotFound: NotFoundError)."""
    reply = (client or default_client()).get_schedule(name)
    return schedules.info(reply.schedule, tuple(reply.warnings))


def list_schedules(
    workflow: Callable[..., Any] | str | None = None, *, client: Client | None = None
) -> list[ScheduleInfo]:
    """Every schedule (of `workflow`, if given), by name."""
    client = client or default_client()
    name = workflow_name(workflow) if workflow is not None else ""
    found: list[ScheduleInfo] = []
    token = ""
    while True:
        page = client.list_schedules(page_token=token, workflow_name=name)
        found += [schedules.info(s) for s in page.schedules]
        token = page.next_page_token
        if not token:
            return found


def pause_schedule(name: str, *, client: Client | None = None) -> ScheduleInfo:
    return schedules.info((client or default_client()).pause_schedule(name))


def resume_schedule(name: str, *, client: Client | None = None) -> ScheduleInfo:
    """Resume a paused schedule from now on: ticks missed while paused are not started."""
    return schedules.info((client or default_client()).resume_schedule(name))


def delete_schedule(name: str, *, client: Client | None = None) -> bool:
    """Delete a schedule (its workflows are left alone); False if there was none."""
    return (client or default_client()).delete_schedule(name)


def trigger_schedule(name: str, *, client: Client | None = None) -> WorkflowHandle[Any]:
    """Start the schedule's workflow now, outside its ticks; a handle to it."""
    client = client or default_client()
    return WorkflowHandle(client.trigger_schedule(name).workflow_id, client)


def scheduled_time() -> datetime | None:
    """The tick the running workflow was started for by a schedule (timezone-aware, UTC),
    or None for a workflow started otherwise. The same in both faces."""
    context = current()
    if context is None:
        raise NotInWorkflowError("scheduled_time can only be called from a workflow")
    return context.scheduled_time
