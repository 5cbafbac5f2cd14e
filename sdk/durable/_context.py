"""The state of the workflow running in the current thread: its ID, replay history and the
position of the next step."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import grpc

from durable._client import Client
from durable.errors import NonDeterminismError
from durable.v1 import coordinator_pb2 as pb

_KIND_LABEL = {pb.STEP_KIND_STEP: "step", pb.STEP_KIND_SET_EVENT: "set_event"}


@dataclass
class WorkflowContext:
    workflow_id: str
    client: Client
    # Recorded steps by position; consumed as the replay passes them.
    history: dict[int, pb.Step] = field(default_factory=dict)
    last_step_id: int = 0
    # Set while a step's function runs: operations inside it are not checkpointed.
    in_step: bool = False

    def next_step(self, kind: pb.StepKind.ValueType, name: str) -> tuple[int, pb.Step | None]:
        """Claim the next position; return it with its recorded step, if any.

        Raises NonDeterminismError when a different operation was recorded there.
        """
        self.last_step_id += 1
        step_id = self.last_step_id
        recorded = self.history.pop(step_id, None)
        if recorded is not None and (recorded.kind, recorded.name) != (kind, name):
            raise NonDeterminismError(
                f"workflow {self.workflow_id!r} step {step_id} was recorded as "
                f"{_KIND_LABEL.get(recorded.kind, '?')} {recorded.name!r}, but the replay "
                f"asked for {_KIND_LABEL[kind]} {name!r}: the workflow is not deterministic",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            )
        return step_id, recorded


_current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "durable_workflow", default=None
)


def current() -> WorkflowContext | None:
    """The workflow running in this thread, or None outside workflows."""
    return _current.get()


def enter(context: WorkflowContext) -> contextvars.Token[WorkflowContext | None]:
    return _current.set(context)


def leave(token: contextvars.Token[WorkflowContext | None]) -> None:
    _current.reset(token)
