"""Cron schedules as data: the `@durable.scheduled` mark, the ScheduleSpec a schedule is set
with, and the ScheduleInfo a recorded one reads as. No I/O: both faces call the
coordinator's ScheduleService with what is built here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from google.protobuf import timestamp_pb2

from durable import _payloads
from durable._core.specs import WorkflowSpec, spec_of
from durable.errors import DurableError
from durable.v1 import schedules_pb2 as spb

CatchUp = Literal["skip", "latest", "all"]
_CATCH_UP: dict[str, spb.CatchUpPolicy.ValueType] = {
    "skip": spb.CATCH_UP_POLICY_SKIP,
    "latest": spb.CATCH_UP_POLICY_LATEST,
    "all": spb.CATCH_UP_POLICY_ALL,
}
_CATCH_UP_NAMES: dict[int, CatchUp] = {
    spb.CATCH_UP_POLICY_SKIP: "skip",
    spb.CATCH_UP_POLICY_LATEST: "latest",
    spb.CATCH_UP_POLICY_ALL: "all",
}
# What a schedule's name may hold (the tick's workflow ID is name@time).
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._:-]")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ScheduleDecl:
    """What `@durable.scheduled` asks for; a worker running the workflow sets it."""

    cron: str
    name: str
    time_zone: str
    catch_up: CatchUp
    queue: str


def default_name(workflow_name: str) -> str:
    """A schedule name from a workflow name ("reports.nightly"), its characters kept to
    those a schedule name may have."""
    return _NOT_IN_NAME.sub("-", workflow_name)[:200]


def scheduled(
    cron: str,
    *,
    name: str | None = None,
    time_zone: str = "UTC",
    catch_up: CatchUp = "skip",
    queue: str | None = None,
) -> Callable[[F], F]:
    """Mark a workflow to run on a cron schedule; put it above `@durable.workflow`."""
    if catch_up not in _CATCH_UP:
        raise ValueError(f"catch_up must be one of {sorted(_CATCH_UP)}, not {catch_up!r}")

    def mark(fn: F) -> F:
        try:
            spec = spec_of(fn)
        except DurableError:
            raise DurableError(
                f"@durable.scheduled goes above @durable.workflow: {fn!r} is not a workflow"
            ) from None
        decl = ScheduleDecl(cron, name or default_name(spec.name), time_zone, catch_up, queue or "")
        # On the function the spec holds: a worker reads it from the spec.
        spec.fn.__durable_schedule__ = decl  # type: ignore[attr-defined]
        return fn

    return mark


def manual_workflow_id(schedule_name: str) -> str:
    """The ID of a triggered run, chosen by the caller so that a retried trigger is
    idempotent (the coordinator's own default looks the same)."""
    return f"{schedule_name}@manual-{uuid.uuid4().hex}"


def declared(spec: WorkflowSpec) -> ScheduleDecl | None:
    """The schedule `@durable.scheduled` gave a workflow, if any."""
    decl = getattr(spec.fn, "__durable_schedule__", None)
    return decl if isinstance(decl, ScheduleDecl) else None


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: pass an aware datetime")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(timezone.utc))
    return stamp


def spec_message(
    name: str,
    cron: str,
    workflow_name: str,
    *,
    time_zone: str = "UTC",
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str = "",
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    catch_up: CatchUp = "skip",
) -> spb.ScheduleSpec:
    """The ScheduleSpec to set: the workflow's input is the SDK's {"args", "kwargs"}."""
    if catch_up not in _CATCH_UP:
        raise ValueError(f"catch_up must be one of {sorted(_CATCH_UP)}, not {catch_up!r}")
    message = spb.ScheduleSpec(
        name=name,
        cron=cron,
        time_zone=time_zone,
        workflow_name=workflow_name,
        input=_payloads.encode({"args": list(args), "kwargs": kwargs or {}}),
        queue_name=queue,
        catch_up=_CATCH_UP[catch_up],
    )
    if start_time is not None:
        message.start_time.CopyFrom(_timestamp(start_time))
    if end_time is not None:
        message.end_time.CopyFrom(_timestamp(end_time))
    return message


def declared_message(spec: WorkflowSpec, decl: ScheduleDecl) -> spb.ScheduleSpec:
    return spec_message(
        decl.name,
        decl.cron,
        spec.name,
        time_zone=decl.time_zone,
        queue=decl.queue,
        catch_up=decl.catch_up,
    )


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the coordinator recorded it. Times are timezone-aware (UTC);
    `next_ticks` are the next few tick times (none when paused or ended); `warnings` say
    why its workflows may not run (get_schedule only)."""

    name: str
    cron: str
    time_zone: str
    workflow_name: str
    input: Any
    queue_name: str | None
    start_time: datetime | None
    end_time: datetime | None
    catch_up: CatchUp
    paused: bool
    created_at: datetime
    updated_at: datetime
    last_tick: datetime | None
    last_workflow_id: str | None
    next_ticks: list[datetime]
    warnings: tuple[str, ...] = ()


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=timezone.utc)


def info(message: spb.Schedule, warnings: tuple[str, ...] = ()) -> ScheduleInfo:
    spec = message.spec
    return ScheduleInfo(
        name=spec.name,
        cron=spec.cron,
        time_zone=spec.time_zone,
        workflow_name=spec.workflow_name,
        input=_payloads.decode_or_raw(spec.input) if spec.HasField("input") else None,
        queue_name=spec.queue_name or None,
        start_time=_time(spec.start_time) if spec.HasField("start_time") else None,
        end_time=_time(spec.end_time) if spec.HasField("end_time") else None,
        catch_up=_CATCH_UP_NAMES.get(spec.catch_up, "skip"),
        paused=message.paused,
        created_at=_time(message.create_time),
        updated_at=_time(message.update_time),
        last_tick=_time(message.last_tick_time) if message.HasField("last_tick_time") else None,
        last_workflow_id=message.last_workflow_id or None,
        next_ticks=[_time(t) for t in message.next_tick_times],
        warnings=warnings,
    )
