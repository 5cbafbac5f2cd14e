"""A worker's rules, transport aside: its arguments, the search for work it claimed but
never heard of, and what an error ending a run means. The sync Worker (threads) and the
async one (tasks) both follow these."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

from durable._core import ops, schedules
from durable._core.specs import WorkflowSpec, spec_of
from durable.errors import (
    CoordinatorError,
    CoordinatorUnavailableError,
    DurableError,
    WorkflowNotPendingError,
    WorkflowOwnershipLostError,
)
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import schedules_pb2 as spb

MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 600.0
log = logging.getLogger("durable.worker")

# How long one PollWork waits server-side for work; `stop()` cancels it at once.
POLL_WAIT_SECONDS = 10.0
# The most workflows one PollWork may claim.
MAX_CLAIM = 100
# Pause after a failed poll, and the first pause before running a workflow again after
# the coordinator stayed unreachable (doubling up to the maximum).
ERROR_PAUSE_SECONDS = 1.0
MAX_ERROR_PAUSE_SECONDS = 30.0


def worker_specs(
    workflows: Iterable[Callable[..., Any]],
    lease_seconds: float,
    max_concurrent: int,
    *,
    is_async: bool,
) -> dict[str, WorkflowSpec]:
    """The workflows a worker runs, by name; raises for bad arguments (ValueError) or a
    workflow of the other face (DurableError)."""
    found: dict[str, WorkflowSpec] = {}
    for fn in workflows:
        spec = spec_of(fn)
        if spec.is_async != is_async:
            raise DurableError(
                f"workflow {spec.name!r} is async def: run it in a durable.aio.Worker"
                if spec.is_async
                else f"workflow {spec.name!r} is a plain function: run it in a durable.Worker"
            )
        if found.setdefault(spec.name, spec).fn is not spec.fn:
            raise ValueError(f"two workflows are named {spec.name!r}")
    if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValueError(
            f"lease_seconds must be {MIN_LEASE_SECONDS:g}-{MAX_LEASE_SECONDS:g},"
            f" not {lease_seconds}"
        )
    if max_concurrent < 1:
        raise ValueError("max_concurrent must be at least 1")
    return found


def declared_schedules(specs: dict[str, WorkflowSpec]) -> list[spb.ScheduleSpec]:
    """The schedules `@durable.scheduled` declared on a worker's workflows: the worker sets
    them when it starts (idempotent: an unchanged schedule stays as it is, a changed one is
    updated in place)."""
    found = []
    for name in sorted(specs):
        decl = schedules.declared(specs[name])
        if decl is not None:
            found.append(schedules.declared_message(specs[name], decl))
    return found


def stranded(
    executor_id: str, names: Iterable[str], runs_here: Callable[[str], bool]
) -> ops.Op[list[pb.Workflow]]:
    """The PENDING workflows of this session that nothing in this process runs (claimed
    by a poll whose reply was lost)."""
    found: list[pb.Workflow] = []
    for name in sorted(names):
        request = pb.ListWorkflowsRequest(
            statuses=[pb.WORKFLOW_STATUS_PENDING], name=name, page_size=1000
        )
        while True:
            reply: pb.ListWorkflowsResponse = yield ops.Call("list_workflows", (request,))
            found.extend(
                workflow
                for workflow in reply.workflows
                if workflow.executor_id == executor_id and not runs_here(workflow.workflow_id)
            )
            if not reply.next_page_token:
                break
            request.page_token = reply.next_page_token
    return found


def claimed_spec(specs: dict[str, WorkflowSpec], workflow: pb.Workflow) -> WorkflowSpec | None:
    """The spec a claimed workflow runs with, its claim logged; None (logged as an error)
    for a name the worker does not have, which the coordinator never offers."""
    spec = specs.get(workflow.name)
    if spec is None:
        log.error("claimed workflow %s has unknown name %r", workflow.workflow_id, workflow.name)
        return None
    log.info(
        "workflow %s (%s) claimed%s",
        workflow.workflow_id,
        workflow.name,
        f" after {workflow.recovery_attempts} recoveries" if workflow.recovery_attempts else "",
    )
    return spec


class RunEnd(enum.Enum):
    """What the error that ended a claimed workflow's run means for the worker."""

    STOPPED = "stopped"  # another worker runs it now, it was cancelled, or it finished
    UNAVAILABLE = "unavailable"  # try again later, while it is still this worker's
    CANNOT_RUN = "cannot run"  # e.g. NonDeterminismError: PENDING until code that replays
    SDK_ERROR = "sdk error"  # a DurableError of the SDK itself
    WORKFLOW_ERROR = "workflow error"  # the workflow's own error, recorded as its outcome


def run_end(error: Exception) -> RunEnd:
    if isinstance(error, WorkflowOwnershipLostError | WorkflowNotPendingError):
        return RunEnd.STOPPED
    if isinstance(error, CoordinatorUnavailableError):
        return RunEnd.UNAVAILABLE
    if isinstance(error, CoordinatorError):
        return RunEnd.CANNOT_RUN
    if isinstance(error, DurableError):
        return RunEnd.SDK_ERROR
    return RunEnd.WORKFLOW_ERROR
