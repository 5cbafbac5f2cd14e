"""The state of one running workflow: its ID, the worker session running it, its replay
history and the position of the next step. No I/O: the face that runs the workflow keeps
its client here, and only that face calls it."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import grpc

from durable.errors import DurableError, NonDeterminismError
from durable.v1 import coordinator_pb2 as pb

# How a step's kind is named to users: in StepInfo (list_steps) and in error messages.
StepKind = Literal[
    "step",
    "set_event",
    "sleep",
    "send",
    "recv",
    "get_event",
    "start_workflow",
    "patch",
    "set_attributes",
]
STEP_KINDS: dict[int, StepKind] = {
    pb.STEP_KIND_STEP: "step",
    pb.STEP_KIND_SET_EVENT: "set_event",
    pb.STEP_KIND_SLEEP: "sleep",
    pb.STEP_KIND_SEND: "send",
    pb.STEP_KIND_RECV: "recv",
    pb.STEP_KIND_GET_EVENT: "get_event",
    pb.STEP_KIND_START_WORKFLOW: "start_workflow",
    pb.STEP_KIND_PATCH: "patch",
    pb.STEP_KIND_SET_ATTRIBUTES: "set_attributes",
}


@dataclass
class WorkflowContext:
    workflow_id: str
    # The face's client (durable.Client or durable.aio.AsyncClient) the run talks through.
    # The core never calls it; it is here so that operations find the run's own client.
    client: Any
    # Whether the workflow is an `async def` run by the async face: operations check that
    # they are called through the matching face, rather than block its event loop.
    is_async: bool = False
    # Recorded steps by position; consumed as the replay passes them.
    history: dict[int, pb.Step] = field(default_factory=dict)
    # The worker session running the workflow ('' when not run by a worker). Every write
    # carries it, so the coordinator refuses them once another worker has taken over.
    executor_id: str = ""
    last_step_id: int = 0
    # Failed attempts recorded for steps without an outcome, by position: a resumed run
    # numbers its next attempt after them.
    failed_attempts: dict[int, int] = field(default_factory=dict)
    # The application version the run's code belongs to ('' for none); children started
    # here run under it.
    app_version: str = ""
    # For a workflow started by a schedule: the tick it runs for.
    scheduled_time: datetime | None = None

    def peek(self) -> pb.Step | None:
        """The step recorded at the next position, without claiming it."""
        return self.history.get(self.last_step_id + 1)

    def skip(self) -> None:
        """Claim the next position without an operation (a deprecated patch's marker)."""
        self.last_step_id += 1
        self.history.pop(self.last_step_id, None)

    def next_step(self, kind: pb.StepKind.ValueType, name: str) -> tuple[int, pb.Step | None]:
        """Claim the next position; return it with its recorded step, if any.

        Positions are claimed in call order, which is what makes a replay find each
        operation's record: in async code an operation claims its position when it is
        called, not when it is awaited, so `asyncio.gather(a(), b())` numbers a before b.
        Raises NonDeterminismError when a different operation was recorded there.
        """
        self.last_step_id += 1
        step_id = self.last_step_id
        recorded = self.history.pop(step_id, None)
        if recorded is not None and (recorded.kind, recorded.name) != (kind, name):
            raise NonDeterminismError(
                f"workflow {self.workflow_id!r} step {step_id} was recorded as "
                f"{STEP_KINDS.get(recorded.kind, '?')} {recorded.name!r}, but the replay "
                f"asked for {STEP_KINDS[kind]} {name!r}: the workflow is not deterministic",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            )
        return step_id, recorded

    def caller(self, step_id: int) -> pb.StepRef:
        """The reference to this run's step `step_id`, for calls checkpointed as it."""
        return pb.StepRef(
            workflow_id=self.workflow_id, step_id=step_id, executor_id=self.executor_id
        )


_current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "durable_workflow", default=None
)


@dataclass(frozen=True)
class StepScope:
    """The step whose function is running: its workflow, position and attempt."""

    workflow_id: str
    step_id: int
    attempt: int = 1

    @property
    def idempotency_key(self) -> str:
        """A key for external APIs, the same on every attempt and after recovery: the
        workflow ID and step position, hashed when longer than 255 characters."""
        key = f"{self.workflow_id}:{self.step_id}"
        if len(key) <= 255:
            return key
        digest = hashlib.sha256(self.workflow_id.encode()).hexdigest()
        return f"{digest}:{self.step_id}"


# The step whose function runs here, if any: operations inside it are not checkpointed. A
# context variable, not a field of the shared WorkflowContext, so that one step running
# in an async workflow does not make its siblings (gathered beside it) look inside a step.
_in_step: contextvars.ContextVar[StepScope | None] = contextvars.ContextVar(
    "durable_in_step", default=None
)


def current() -> WorkflowContext | None:
    """The workflow running in this thread or task, or None outside workflows."""
    return _current.get()


# The timeout of the steps called in a `set_step_timeout` block, instead of their
# decorator's: unset (None), or a 1-tuple of seconds, where (None,) means no timeout.
next_step_timeout: contextvars.ContextVar[tuple[float | None] | None] = contextvars.ContextVar(
    "durable_next_step_timeout", default=None
)


def step_timeout(decorated: float | None) -> float | None:
    """The timeout of a step's attempts called here: an enclosing `set_step_timeout`
    block's, else its decorator's (`decorated`); None for no timeout."""
    chosen = next_step_timeout.get()
    return decorated if chosen is None else chosen[0]


@dataclass(frozen=True)
class Entered:
    """What `leave` undoes."""

    current: contextvars.Token[WorkflowContext | None]
    step_timeout: contextvars.Token[tuple[float | None] | None]


def enter(context: WorkflowContext) -> Entered:
    """Make `context` the running workflow here. A `set_step_timeout` block around the
    call that runs a workflow body (a child running inline) is cleared: it is for the
    caller's own steps."""
    return Entered(_current.set(context), next_step_timeout.set(None))


def leave(entered: Entered) -> None:
    next_step_timeout.reset(entered.step_timeout)
    _current.reset(entered.current)


def in_step() -> bool:
    """Whether a step's function is running here (in this thread or task)."""
    return _in_step.get() is not None


def step_scope() -> StepScope | None:
    """The step whose function is running here, if any."""
    return _in_step.get()


# Marks a step running outside a checkpointed position (a plain call of a step function).
_UNCHECKPOINTED = StepScope("", 0)


@contextlib.contextmanager
def stepping(scope: StepScope | None = None) -> Iterator[None]:
    """Mark the block as the function of step `scope` running."""
    token = _in_step.set(scope or _UNCHECKPOINTED)
    try:
        yield
    finally:
        _in_step.reset(token)


def checkpointing(operation: str, *, is_async: bool) -> WorkflowContext | None:
    """The workflow whose step `operation` will be, from the face that is `is_async`; None
    outside workflows and inside steps (where operations are plain calls).

    Raises DurableError when the workflow belongs to the other face: a sync operation in
    an `async def` workflow would block its event loop, an awaited one in a sync workflow
    has no loop to run on.
    """
    context = _current.get()
    if context is None or _in_step.get() is not None:
        return None
    if context.is_async != is_async:
        raise face_mismatch(operation, workflow_is_async=context.is_async)
    return context


def face_mismatch(operation: str, *, workflow_is_async: bool) -> DurableError:
    if workflow_is_async:
        return DurableError(
            f"{operation} was called through the sync API inside an async workflow, where it"
            f" would block the event loop: use `await durable.aio.{operation}(...)`"
        )
    return DurableError(
        f"durable.aio.{operation} was called inside a sync workflow: use"
        f" `durable.{operation}(...)`, or make the workflow `async def`"
    )


def starting_context(operation: str, *, is_async: bool) -> WorkflowContext | None:
    """The workflow a start from here is a child of (None: a top-level start). A workflow
    cannot be started inside a step, nor through the other face's API."""
    context = _current.get()
    if context is None:
        return None
    if _in_step.get() is not None:
        raise DurableError(
            "a workflow cannot be started inside a step; start it from the workflow itself"
        )
    if context.is_async != is_async:
        raise face_mismatch(operation, workflow_is_async=context.is_async)
    return context
