"""The ScheduleService servicer: validate the request, call the schedule store, build the
reply. Errors map to status codes as CoordinatorService's do (coordinator/edge.py)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from coordinator import validation, wire
from coordinator.auth import Authenticator
from coordinator.config import Config
from coordinator.edge import Context, unary
from coordinator.errors import InvalidArgument
from coordinator.schedules.cron import NEXT_TICKS_SHOWN, CatchUp, Cron, CronError
from coordinator.store import schedules
from coordinator.store.schedules import ScheduleRecord, ScheduleSpec
from durable.v1 import schedules_pb2 as spb
from durable.v1 import schedules_pb2_grpc as spb_grpc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The tick's workflow ID is name@time, so a name has neither "@" nor "/"; 200 characters
# leave room for the time within the 256 of a workflow ID.
_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_MAX_CRON_LENGTH = 256

_CATCH_UP = {
    spb.CATCH_UP_POLICY_UNSPECIFIED: CatchUp.SKIP,
    spb.CATCH_UP_POLICY_SKIP: CatchUp.SKIP,
    spb.CATCH_UP_POLICY_LATEST: CatchUp.LATEST,
    spb.CATCH_UP_POLICY_ALL: CatchUp.ALL,
}
_CATCH_UP_WIRE = {
    CatchUp.SKIP: spb.CATCH_UP_POLICY_SKIP,
    CatchUp.LATEST: spb.CATCH_UP_POLICY_LATEST,
    CatchUp.ALL: spb.CATCH_UP_POLICY_ALL,
}


def schedule_name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument(field, "required")
    if not _SCHEDULE_NAME.fullmatch(value):
        raise InvalidArgument(field, "must be 1-200 characters from [A-Za-z0-9._:-]")
    return value


def _spec(message: spb.ScheduleSpec, max_payload_bytes: int) -> ScheduleSpec:
    name = schedule_name(message.name, "spec.name")
    if not message.cron.strip():
        raise InvalidArgument("spec.cron", "required")
    if len(message.cron) > _MAX_CRON_LENGTH:
        raise InvalidArgument("spec.cron", f"longer than {_MAX_CRON_LENGTH} characters")
    if len(message.time_zone) > 64:
        raise InvalidArgument("spec.time_zone", "longer than 64 characters")
    try:
        Cron.parse("* * * * *", message.time_zone)
    except CronError as exc:
        raise InvalidArgument("spec.time_zone", str(exc)) from None
    try:
        cron = Cron.parse(message.cron, message.time_zone)
    except CronError as exc:
        raise InvalidArgument("spec.cron", str(exc)) from None
    if message.catch_up not in _CATCH_UP:
        raise InvalidArgument("spec.catch_up", f"unknown policy {message.catch_up}")
    start_at = validation.timestamp(
        message.HasField("start_time"), message.start_time, "spec.start_time"
    )
    end_at = validation.timestamp(message.HasField("end_time"), message.end_time, "spec.end_time")
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise InvalidArgument("spec.end_time", "must be after spec.start_time")
    return ScheduleSpec(
        name=name,
        cron=cron,
        workflow_name=validation.name(message.workflow_name, "spec.workflow_name"),
        input=(
            validation.payload(message.input, "spec.input", max_payload_bytes)
            if message.HasField("input")
            else None
        ),
        queue_name=(
            validation.name(message.queue_name, "spec.queue_name") if message.queue_name else None
        ),
        start_at=start_at,
        end_at=end_at,
        catch_up=_CATCH_UP[message.catch_up],
    )


def schedule_message(record: ScheduleRecord, now: datetime) -> spb.Schedule:
    spec = record.spec
    message = spb.Schedule(
        spec=spb.ScheduleSpec(
            name=spec.name,
            cron=spec.cron.expression,
            time_zone=spec.cron.zone.key,
            workflow_name=spec.workflow_name,
            queue_name=spec.queue_name or "",
            catch_up=_CATCH_UP_WIRE[spec.catch_up],
        ),
        paused=record.paused,
        create_time=wire.timestamp(record.created_at),
        update_time=wire.timestamp(record.updated_at),
        last_workflow_id=record.last_workflow_id or "",
    )
    if spec.input is not None:
        message.spec.input.CopyFrom(wire.payload(spec.input))
    if spec.start_at is not None:
        message.spec.start_time.CopyFrom(wire.timestamp(spec.start_at))
    if spec.end_at is not None:
        message.spec.end_time.CopyFrom(wire.timestamp(spec.end_at))
    if record.last_tick_at is not None:
        message.last_tick_time.CopyFrom(wire.timestamp(record.last_tick_at))
    if not record.paused:
        # ticked_until is just before the start time when that is still to come.
        start = max(now, record.ticked_until)
        message.next_tick_times.extend(
            wire.timestamp(tick)
            for tick in spec.cron.upcoming(start, spec.end_at, NEXT_TICKS_SHOWN)
        )
    return message


class ScheduleService(spb_grpc.ScheduleServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, config: Config, wake: asyncio.Event) -> None:
        self._pool = pool
        self._config = config
        self._auth = Authenticator(config.tokens)
        # Set when a schedule changes here, so this coordinator's tick loop looks at once.
        self._wake = wake

    def _namespace(self, context: Context) -> str:
        return self._auth.namespace(context.invocation_metadata())

    async def _message(self, record: ScheduleRecord) -> spb.Schedule:
        now = await schedules.database_now(self._pool)
        return schedule_message(record, now)

    @unary
    async def SetSchedule(
        self, request: spb.SetScheduleRequest, context: Context
    ) -> spb.SetScheduleResponse:
        ns = self._namespace(context)
        if not request.HasField("spec"):
            raise InvalidArgument("spec", "required")
        spec = _spec(request.spec, self._config.max_payload_bytes)
        record, created = await schedules.set_schedule(self._pool, ns, spec)
        self._wake.set()
        return spb.SetScheduleResponse(schedule=await self._message(record), created=created)

    @unary
    async def GetSchedule(
        self, request: spb.GetScheduleRequest, context: Context
    ) -> spb.GetScheduleResponse:
        ns = self._namespace(context)
        record = await schedules.get(self._pool, ns, schedule_name(request.name))
        response = spb.GetScheduleResponse(schedule=await self._message(record))
        response.warnings.extend(await self._warnings(ns, record))
        return response

    async def _warnings(self, ns: str, record: ScheduleRecord) -> list[str]:
        spec = record.spec
        found = []
        if record.paused:
            found.append("paused: no workflow is started for its ticks until it is resumed")
        if record.next_tick_at is None and not record.paused:
            found.append("ended: it has no tick left before its end time")
        if await schedules.live_workers(self._pool, ns, spec) == 0:
            where = f" serving queue {spec.queue_name!r}" if spec.queue_name else ""
            found.append(
                f"no live worker registers workflow {spec.workflow_name!r}{where}:"
                " its workflows wait ENQUEUED until one does"
            )
        return found

    @unary
    async def ListSchedules(
        self, request: spb.ListSchedulesRequest, context: Context
    ) -> spb.ListSchedulesResponse:
        ns = self._namespace(context)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0-{MAX_PAGE_SIZE}")
        found, next_token = await schedules.list_schedules(
            self._pool,
            ns,
            limit=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
            workflow_name=(
                validation.name(request.workflow_name, "workflow_name")
                if request.workflow_name
                else ""
            ),
        )
        now = await schedules.database_now(self._pool)
        return spb.ListSchedulesResponse(
            schedules=[schedule_message(r, now) for r in found], next_page_token=next_token
        )

    @unary
    async def PauseSchedule(
        self, request: spb.PauseScheduleRequest, context: Context
    ) -> spb.PauseScheduleResponse:
        ns = self._namespace(context)
        record = await schedules.pause(self._pool, ns, schedule_name(request.name))
        return spb.PauseScheduleResponse(schedule=await self._message(record))

    @unary
    async def ResumeSchedule(
        self, request: spb.ResumeScheduleRequest, context: Context
    ) -> spb.ResumeScheduleResponse:
        ns = self._namespace(context)
        record = await schedules.resume(self._pool, ns, schedule_name(request.name))
        self._wake.set()
        return spb.ResumeScheduleResponse(schedule=await self._message(record))

    @unary
    async def DeleteSchedule(
        self, request: spb.DeleteScheduleRequest, context: Context
    ) -> spb.DeleteScheduleResponse:
        ns = self._namespace(context)
        deleted = await schedules.delete(self._pool, ns, schedule_name(request.name))
        return spb.DeleteScheduleResponse(deleted=deleted)

    @unary
    async def TriggerSchedule(
        self, request: spb.TriggerScheduleRequest, context: Context
    ) -> spb.TriggerScheduleResponse:
        ns = self._namespace(context)
        name = schedule_name(request.name)
        workflow_id = (
            validation.workflow_id(request.workflow_id)
            if request.workflow_id
            else f"{name}@manual-{uuid.uuid4().hex}"
        )
        record = await schedules.trigger(self._pool, ns, name, workflow_id)
        return spb.TriggerScheduleResponse(workflow=wire.workflow(record))
