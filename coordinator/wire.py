"""Records to wire messages: the one place the store's types meet the proto's."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf import duration_pb2, timestamp_pb2

from coordinator.store.queues import QueueConfig, QueueLoad
from coordinator.store.records import (
    EventEntry,
    EventValue,
    Failure,
    Outcome,
    Payload,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
)
from durable.v1 import coordinator_pb2 as pb

_STATUS = {
    Status.PENDING: pb.WORKFLOW_STATUS_PENDING,
    Status.SUCCESS: pb.WORKFLOW_STATUS_SUCCESS,
    Status.ERROR: pb.WORKFLOW_STATUS_ERROR,
    Status.CANCELLED: pb.WORKFLOW_STATUS_CANCELLED,
    Status.DEAD_LETTER: pb.WORKFLOW_STATUS_DEAD_LETTER,
    Status.ENQUEUED: pb.WORKFLOW_STATUS_ENQUEUED,
}
_KIND = {
    StepKind.STEP: pb.STEP_KIND_STEP,
    StepKind.SET_EVENT: pb.STEP_KIND_SET_EVENT,
    StepKind.SLEEP: pb.STEP_KIND_SLEEP,
    StepKind.SEND: pb.STEP_KIND_SEND,
    StepKind.RECV: pb.STEP_KIND_RECV,
    StepKind.GET_EVENT: pb.STEP_KIND_GET_EVENT,
    StepKind.START_WORKFLOW: pb.STEP_KIND_START_WORKFLOW,
    StepKind.PATCH: pb.STEP_KIND_PATCH,
    StepKind.SET_ATTRIBUTES: pb.STEP_KIND_SET_ATTRIBUTES,
}


def status(value: Status) -> pb.WorkflowStatus.ValueType:
    return _STATUS[value]


def status_from_wire(value: int) -> Status | None:
    """The status a wire enum value names; None for UNSPECIFIED or unknown values."""
    for known, wire_value in _STATUS.items():
        if wire_value == value:
            return known
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """As Timestamp.FromDatetime (a naive time is UTC), in a quarter of its time: every
    step and workflow in a reply carries two or three of these."""
    since = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000
    )


def payload(value: Payload) -> pb.Payload:
    return pb.Payload(encoding=value.encoding, data=value.data)


def failure(value: Failure) -> pb.Failure:
    return pb.Failure(type=value.type, message=value.message, details=value.details)


def _outcome_fields(value: Outcome | None) -> dict[str, pb.Payload | pb.Failure]:
    if isinstance(value, Payload):
        return {"output": payload(value)}
    if isinstance(value, Failure):
        return {"error": failure(value)}
    return {}


def workflow(record: WorkflowRecord) -> pb.Workflow:
    message = pb.Workflow(
        workflow_id=record.workflow_id,
        name=record.name,
        status=status(record.status),
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
        **_outcome_fields(record.result),  # type: ignore[arg-type]
    )
    if record.input is not None:
        message.input.CopyFrom(payload(record.input))
    if record.executor_id:
        message.executor_id = record.executor_id
    message.recovery_attempts = record.recovery_attempts
    if record.deadline_at is not None:
        message.deadline.CopyFrom(timestamp(record.deadline_at))
    if record.forked_from:
        message.forked_from = record.forked_from
    if record.queue_name:
        message.queue_name = record.queue_name
        message.priority = record.priority
    if record.deduplication_id:
        message.deduplication_id = record.deduplication_id
    if record.parent_workflow_id:
        message.parent_workflow_id = record.parent_workflow_id
    if record.app_version:
        message.app_version = record.app_version
    if record.schedule_name:
        message.schedule_name = record.schedule_name
    if record.scheduled_at is not None:
        message.scheduled_time.CopyFrom(timestamp(record.scheduled_at))
    if record.due_at is not None:
        message.due_time.CopyFrom(timestamp(record.due_at))
    if record.partition_key:
        message.partition_key = record.partition_key
    if record.debounce_key:
        message.debounce_key = record.debounce_key
    message.attributes.update(record.attributes)
    return message


def step(record: StepRecord) -> pb.Step:
    message = pb.Step(
        step_id=record.step_id,
        name=record.name,
        kind=_KIND[record.kind],
        record_time=timestamp(record.recorded_at),
        attempts=record.attempts,
        failed_attempts=[
            pb.StepAttempt(
                attempt=a.attempt,
                error=failure(a.error),
                start_time=timestamp(a.started_at) if a.started_at else None,
                end_time=timestamp(a.ended_at),
            )
            for a in record.failed_attempts
        ],
        **_outcome_fields(record.outcome),  # type: ignore[arg-type]
    )
    if record.started_at is not None:
        message.start_time.CopyFrom(timestamp(record.started_at))
    if record.deadline_at is not None:
        message.deadline.CopyFrom(timestamp(record.deadline_at))
    message.timed_out = record.timed_out
    return message


def event(value: EventValue) -> pb.GetEventResponse:
    return pb.GetEventResponse(
        event=pb.EventValue(
            value=payload(value.value), version=value.version, set_time=timestamp(value.set_at)
        )
    )


def event_entry(entry: EventEntry) -> pb.Event:
    return pb.Event(key=entry.key, value=event(entry.value).event)


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def recorded_event(record: StepRecord) -> pb.GetEventResponse:
    """A GET_EVENT step replayed as its GetEvent message: the value read (version 0, set
    when it was read), or `timed_out` when the wait ended without one."""
    if record.timed_out:
        return pb.GetEventResponse(timed_out=pb.TimedOut())
    assert isinstance(record.outcome, Payload), "a GET_EVENT step records a value"
    return pb.GetEventResponse(
        event=pb.EventValue(
            value=payload(record.outcome), version=0, set_time=timestamp(record.recorded_at)
        )
    )


def queue_config(config: QueueConfig) -> pb.QueueConfig:
    message = pb.QueueConfig(
        name=config.name,
        concurrency=config.concurrency or 0,
        worker_concurrency=config.worker_concurrency or 0,
        rate_limit=config.rate_limit or 0,
        limits_per_partition=config.limits_per_partition,
        paused=config.paused,
    )
    if config.rate_period is not None:
        message.rate_period.FromTimedelta(config.rate_period)
    return message


def queue_load(load: QueueLoad) -> pb.QueueLoad:
    return pb.QueueLoad(
        partition_key=load.partition_key,
        enqueued=load.enqueued,
        delayed=load.delayed,
        running=load.running,
    )
