"""Managing workflows from outside: list and inspect them, their steps and events, and
cancel, resume or fork them. Everything comes back as plain Python values (dataclasses,
decoded JSON, timezone-aware datetimes), never as wire messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from google.protobuf import timestamp_pb2

from durable import _payloads
from durable._client import Client, default_client
from durable._core.context import STEP_KINDS, StepKind
from durable._core.specs import WorkflowStatus, check_attributes
from durable._workflow import WorkflowHandle
from durable.v1 import coordinator_pb2 as pb

# The most the coordinator returns per page (ListWorkflows, ListSteps).
MAX_PAGE_SIZE = 1000

_STATUS_PREFIX = "WORKFLOW_STATUS_"


class FailureInfo(NamedTuple):
    """A recorded error: the raising language's name for its type (e.g.
    "builtins.ValueError") and its message."""

    type: str
    message: str


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow as the coordinator recorded it.

    `input` and `output` are decoded JSON (a workflow started by this SDK has the input
    `{"args": [...], "kwargs": {...}}`), or a RawPayload for a payload this process cannot
    decode (another language's encoding, or a codec it lacks: see
    docs/payload-codecs.md); `output` is set once the status is SUCCESS and
    `error` once it is ERROR. Times are timezone-aware (UTC). `executor_id` names the
    worker session running it, `recovery_attempts` counts how often it was recovered after
    its worker died, `deadline` is when it is cancelled if still unfinished, and
    `forked_from` the workflow it was forked from. A queued workflow has its `queue_name`,
    `priority` and `deduplication_id`; a child workflow its `parent_workflow_id`.
    `app_version` is the application version it runs on (None until a versioned worker
    or a start names one); a workflow a schedule started has its `schedule_name` and
    `scheduled_time` (the tick it was started for). A delayed or debounced start has its
    `due_time` (an ENQUEUED workflow is not claimed before it; a debounced one's moves on
    with each start of its burst) and `debounce_key`. `attributes` are its search
    attributes (given at start or set by the workflow; empty: none).
    """

    workflow_id: str
    name: str
    status: WorkflowStatus
    input: Any
    output: Any
    error: FailureInfo | None
    created_at: datetime
    updated_at: datetime
    executor_id: str | None
    recovery_attempts: int
    deadline: datetime | None
    forked_from: str | None
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    parent_workflow_id: str | None = None
    app_version: str | None = None
    schedule_name: str | None = None
    scheduled_time: datetime | None = None
    due_time: datetime | None = None
    debounce_key: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepAttemptInfo:
    """A failed attempt of a step that was retried."""

    attempt: int
    error: FailureInfo
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class StepInfo:
    """A recorded step: a "step" (its output or error), a "set_event" (`name` is the
    event key), or a "start_workflow" (`name` is the child's workflow name, `output` its
    workflow ID), among others: "send" and "recv" (`name` is the topic, "" by default),
    "get_event" (`name` is the key), "sleep". `attempts` counts every attempt,
    `failed_attempts` those before the recorded outcome. `deadline`: a sleep's wake-up
    time, or when a recv or get_event wait was due to end; `timed_out`: that wait ended
    without a value."""

    step_id: int
    name: str
    kind: StepKind
    output: Any
    error: FailureInfo | None
    started_at: datetime | None
    recorded_at: datetime
    attempts: int
    failed_attempts: tuple[StepAttemptInfo, ...]
    deadline: datetime | None = None
    timed_out: bool = False


# --- wire messages to values ------------------------------------------------------------


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=timezone.utc)


def _failure(failure: pb.Failure) -> FailureInfo:
    return FailureInfo(failure.type, failure.message)


def workflow_status(value: pb.WorkflowStatus.ValueType) -> WorkflowStatus:
    return WorkflowStatus(pb.WorkflowStatus.Name(value).removeprefix(_STATUS_PREFIX))


def workflow_info(message: pb.Workflow) -> WorkflowInfo:
    return WorkflowInfo(
        workflow_id=message.workflow_id,
        name=message.name,
        status=workflow_status(message.status),
        input=_payloads.decode_or_raw(message.input) if message.HasField("input") else None,
        output=_payloads.decode_or_raw(message.output) if message.HasField("output") else None,
        error=_failure(message.error) if message.HasField("error") else None,
        created_at=_time(message.create_time),
        updated_at=_time(message.update_time),
        executor_id=message.executor_id or None,
        recovery_attempts=message.recovery_attempts,
        deadline=_time(message.deadline) if message.HasField("deadline") else None,
        forked_from=message.forked_from or None,
        queue_name=message.queue_name or None,
        priority=message.priority,
        deduplication_id=message.deduplication_id or None,
        parent_workflow_id=message.parent_workflow_id or None,
        app_version=message.app_version or None,
        schedule_name=message.schedule_name or None,
        scheduled_time=_time(message.scheduled_time)
        if message.HasField("scheduled_time")
        else None,
        due_time=_time(message.due_time) if message.HasField("due_time") else None,
        debounce_key=message.debounce_key or None,
        attributes=dict(message.attributes),
    )


def step_info(message: pb.Step) -> StepInfo:
    return StepInfo(
        step_id=message.step_id,
        name=message.name,
        kind=STEP_KINDS.get(message.kind, "step"),
        output=_payloads.decode_or_raw(message.output) if message.HasField("output") else None,
        error=_failure(message.error) if message.HasField("error") else None,
        started_at=_time(message.start_time) if message.HasField("start_time") else None,
        recorded_at=_time(message.record_time),
        attempts=message.attempts or 1,
        failed_attempts=tuple(
            StepAttemptInfo(
                attempt=attempt.attempt,
                error=_failure(attempt.error),
                started_at=_time(attempt.start_time) if attempt.HasField("start_time") else None,
                ended_at=_time(attempt.end_time) if attempt.HasField("end_time") else None,
            )
            for attempt in message.failed_attempts
        ),
        deadline=_time(message.deadline) if message.HasField("deadline") else None,
        timed_out=message.timed_out,
    )


def _statuses(
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None,
) -> list[pb.WorkflowStatus.ValueType]:
    if status is None:
        return []
    wanted = [status] if isinstance(status, str) else list(status)
    values: list[pb.WorkflowStatus.ValueType] = []
    for item in wanted:
        text = item.value if isinstance(item, WorkflowStatus) else str(item).upper()
        try:
            member = WorkflowStatus(text)
        except ValueError:
            known = ", ".join(known_status.value for known_status in WorkflowStatus)
            raise ValueError(f"unknown workflow status {item!r} (known: {known})") from None
        values.append(pb.WorkflowStatus.Value(_STATUS_PREFIX + member.value))
    return values


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A timestamp; a naive datetime is taken as local time."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(timezone.utc))
    return stamp


# --- the API ----------------------------------------------------------------------------


def list_workflows(
    *,
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    page_size: int = 100,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    client: Client | None = None,
) -> Iterator[WorkflowInfo]:
    """Workflows, newest first, fetched `page_size` at a time as the iteration goes.

    Filters: `status` (one status or several), `name` (the workflow's name),
    `created_after` (inclusive) and `created_before` (exclusive); a naive datetime is
    local time; `parent_workflow_id` (only its child workflows), `queue_name` (only
    workflows enqueued on it), `app_version` (only workflows of that application
    version), `schedule_name` (only workflows that schedule started), `attributes` (only
    workflows whose search attributes include every key = value given; served by an
    index). Raises ValueError at once for an unknown status or a page size outside
    1-1000, TypeError for attributes that are not str to str.
    """
    request = list_request(
        status,
        name,
        created_after,
        created_before,
        parent_workflow_id,
        queue_name,
        page_size,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    return _pages(client or default_client(), request)


def list_request(
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None,
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    parent_workflow_id: str | None,
    queue_name: str | None,
    page_size: int,
    *,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> pb.ListWorkflowsRequest:
    """The first page's request of `list_workflows` (same arguments)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}, not {page_size}")
    request = pb.ListWorkflowsRequest(
        statuses=_statuses(status),
        name=name or "",
        page_size=page_size,
        parent_workflow_id=parent_workflow_id or "",
        queue_name=queue_name or "",
        app_version=app_version or "",
        schedule_name=schedule_name or "",
        attributes=check_attributes(attributes or {}, "list_workflows"),
    )
    if created_after is not None:
        request.created_after.CopyFrom(_timestamp(created_after))
    if created_before is not None:
        request.created_before.CopyFrom(_timestamp(created_before))
    return request


def _pages(client: Client, request: pb.ListWorkflowsRequest) -> Iterator[WorkflowInfo]:
    while True:
        reply = client.list_workflows(request)
        for message in reply.workflows:
            yield workflow_info(message)
        if not reply.next_page_token:
            return
        request.page_token = reply.next_page_token


def get_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowInfo:
    """The workflow with this ID (WorkflowNotFoundError if there is none)."""
    return workflow_info((client or default_client()).get_workflow(workflow_id))


def list_steps(workflow_id: str, *, client: Client | None = None) -> list[StepInfo]:
    """Every recorded step of a workflow, in step order, with its failed attempts."""
    client = client or default_client()
    found: list[StepInfo] = []
    after = 0
    while True:
        reply = client.list_steps(workflow_id, after_step_id=after, page_size=MAX_PAGE_SIZE)
        found.extend(step_info(step) for step in reply.steps)
        if not reply.has_more or not reply.steps:
            return found
        after = reply.steps[-1].step_id


def list_events(workflow_id: str, *, client: Client | None = None) -> dict[str, Any]:
    """The latest value of each event a workflow has set, by key."""
    events = (client or default_client()).list_events(workflow_id)
    return {event.key: _payloads.decode_or_raw(event.value.value) for event in events}


def cancel_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowInfo:
    """Cancel a PENDING or ENQUEUED workflow and return it (CANCELLED). The worker running
    it stops at its next step. A finished workflow comes back unchanged."""
    return workflow_info((client or default_client()).cancel_workflow(workflow_id))


def resume_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowInfo:
    """Resume a CANCELLED or DEAD_LETTER workflow: it becomes ENQUEUED, for a worker to
    continue from its last recorded step. A PENDING or ENQUEUED one comes back unchanged;
    a finished one raises CoordinatorError (fork it instead)."""
    return workflow_info((client or default_client()).resume_workflow(workflow_id))


def fork_workflow(
    workflow_id: str,
    start_step: int,
    *,
    new_workflow_id: str | None = None,
    app_version: str | None = None,
    client: Client | None = None,
) -> WorkflowHandle[Any]:
    """Start a new workflow (ENQUEUED, for a worker to run) with the same name and input,
    keeping the recorded outcomes of the steps before `start_step` (1 reruns everything).

    `new_workflow_id` defaults to a new UUID; forking again with the same new ID returns
    the first fork. `app_version` moves the fork to that application version, so only
    workers of that version run it (default: the original's version).
    """
    client = client or default_client()
    forked = client.fork_workflow(workflow_id, start_step, new_workflow_id or "", app_version or "")
    return WorkflowHandle(forked.workflow_id, client)
