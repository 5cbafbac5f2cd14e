"""The state of the workflow running in the current thread: its ID, the worker session
running it, its replay history and the position of the next step; and which workflows run
in this process at all."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import grpc

from durable._client import Client
from durable.errors import NonDeterminismError, WorkflowOwnershipLostError
from durable.v1 import coordinator_pb2 as pb

# How a step's kind is named to users: in StepInfo (list_steps) and in error messages.
StepKind = Literal["step", "set_event", "sleep", "send", "recv", "get_event", "start_workflow"]
STEP_KINDS: dict[int, StepKind] = {
    pb.STEP_KIND_STEP: "step",
    pb.STEP_KIND_SET_EVENT: "set_event",
    pb.STEP_KIND_SLEEP: "sleep",
    pb.STEP_KIND_SEND: "send",
    pb.STEP_KIND_RECV: "recv",
    pb.STEP_KIND_GET_EVENT: "get_event",
    pb.STEP_KIND_START_WORKFLOW: "start_workflow",
}


@dataclass
class WorkflowContext:
    workflow_id: str
    client: Client
    # Recorded steps by position; consumed as the replay passes them.
    history: dict[int, pb.Step] = field(default_factory=dict)
    # The worker session running the workflow ('' when not run by a worker). Every write
    # carries it, so the coordinator refuses them once another worker has taken over.
    executor_id: str = ""
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
                f"{STEP_KINDS.get(recorded.kind, '?')} {recorded.name!r}, but the replay "
                f"asked for {STEP_KINDS[kind]} {name!r}: the workflow is not deterministic",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            )
        return step_id, recorded

    def check_owner(self) -> None:
        """A write found its step recorded already, though this run had not recorded it:
        someone else ran it. For a worker, that means another worker took the workflow
        over (the coordinator lets a lost executor read recorded steps back); raise
        WorkflowOwnershipLostError rather than running on and repeating its steps."""
        if not self.executor_id:
            return
        workflow = self.client.get_workflow(self.workflow_id)
        if workflow.executor_id != self.executor_id:
            raise ownership_lost(self.workflow_id)


def ownership_lost(workflow_id: str) -> WorkflowOwnershipLostError:
    return WorkflowOwnershipLostError(
        f"workflow {workflow_id!r} is now run by another executor; stop running it",
        grpc.StatusCode.FAILED_PRECONDITION,
        {"workflow_id": workflow_id},
    )


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


# Workflows with a run in this process. Two runs of one workflow here would share its
# executor ID, so fencing could not stop the older one: the newer waits for it instead.
_running_here: set[str] = set()
_running_changed = threading.Condition()


def running_here(workflow_id: str) -> bool:
    """Whether a run of the workflow is going on in this process."""
    with _running_changed:
        return workflow_id in _running_here


@contextlib.contextmanager
def only_run_here(workflow_id: str) -> Iterator[bool]:
    """Hold the workflow's one run in this process, waiting for another to end first.

    Yields whether it waited: the history fetched before is stale then.
    """
    waited = False
    with _running_changed:
        while workflow_id in _running_here:
            waited = True
            _running_changed.wait()
        _running_here.add(workflow_id)
    try:
        yield waited
    finally:
        with _running_changed:
            _running_here.discard(workflow_id)
            _running_changed.notify_all()
