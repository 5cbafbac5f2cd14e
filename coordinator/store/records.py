"""Plain records the store returns; the servicer turns them into wire messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Status(str, enum.Enum):
    """A workflow's status as stored in `durable.workflows.status`."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"

    @property
    def finished(self) -> bool:
        return self is not Status.PENDING


class StepKind(str, enum.Enum):
    """What a step row checkpoints, as stored in `durable.steps.kind`."""

    STEP = "STEP"
    SET_EVENT = "SET_EVENT"


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


@dataclass(frozen=True)
class StepRecord:
    step_id: int
    name: str
    kind: StepKind
    outcome: Outcome
    recorded_at: datetime


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
