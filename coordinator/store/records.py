"""Plain records the store returns; the servicer turns them into wire messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Status(str, enum.Enum):
    """A workflow's status as stored in `durable.workflows.status`."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    DEAD_LETTER = "DEAD_LETTER"
    ENQUEUED = "ENQUEUED"

    @property
    def finished(self) -> bool:
        """No longer running: a waiter stops waiting (CANCELLED and DEAD_LETTER may be
        resumed later, but nothing runs until then)."""
        return self not in (Status.PENDING, Status.ENQUEUED)

    @property
    def runnable(self) -> bool:
        return self in (Status.PENDING, Status.ENQUEUED)


class StepKind(str, enum.Enum):
    """What a step row checkpoints, as stored in `durable.steps.kind`."""

    STEP = "STEP"
    SET_EVENT = "SET_EVENT"
    SLEEP = "SLEEP"
    SEND = "SEND"
    RECV = "RECV"
    GET_EVENT = "GET_EVENT"
    START_WORKFLOW = "START_WORKFLOW"
    PATCH = "PATCH"
    SET_ATTRIBUTES = "SET_ATTRIBUTES"


@dataclass(frozen=True)
class Payload:
    encoding: str
    data: bytes


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    details: str = ""


# A step's or a workflow's outcome: exactly one of the two.
Outcome = Payload | Failure


@dataclass(frozen=True)
class WorkflowRecord:
    workflow_id: str
    name: str
    status: Status
    input: Payload | None
    result: Outcome | None
    created_at: datetime
    updated_at: datetime
    executor_id: str | None = None
    recovery_attempts: int = 0
    deadline_at: datetime | None = None
    forked_from: str | None = None
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    parent_workflow_id: str | None = None
    app_version: str | None = None
    schedule_name: str | None = None
    scheduled_at: datetime | None = None
    # An ENQUEUED workflow is not claimed before this (a delayed or debounced start).
    due_at: datetime | None = None
    partition_key: str | None = None
    debounce_key: str | None = None
    # Search attributes.
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepAttempt:
    """A failed attempt of a step that was retried."""

    attempt: int
    error: Failure
    started_at: datetime | None
    ended_at: datetime


@dataclass(frozen=True)
class StepRecord:
    step_id: int
    name: str
    kind: StepKind
    outcome: Outcome
    recorded_at: datetime
    started_at: datetime | None = None
    attempts: int = 1
    failed_attempts: tuple[StepAttempt, ...] = ()
    # SLEEP: the wake-up time; RECV and GET_EVENT: when the wait was due to end.
    deadline_at: datetime | None = None
    # RECV and GET_EVENT: the wait ended without a value (the output is JSON null).
    timed_out: bool = False


@dataclass(frozen=True)
class EventValue:
    version: int
    value: Payload
    set_at: datetime


@dataclass(frozen=True)
class EventSnapshot:
    """What one read of an event saw, in one database snapshot."""

    # None: the workflow does not exist (yet).
    status: Status | None
    values: list[EventValue]
    # True when more history rows follow the ones returned.
    has_more: bool


@dataclass(frozen=True)
class EventEntry:
    """An event key with its latest value."""

    key: str
    value: EventValue
