"""Bulk actions: cancel or resume every workflow a filter matches, and pausing queues.

    durable.cancel_workflows(name="orders.process", status="ENQUEUED", dry_run=True).matched
    result = durable.cancel_workflows(
        name="orders.process", attributes={"tenant": "acme"}, on_progress=print
    )
    result.changed                      # how many were cancelled
    durable.resume_workflows(queue_name="emails", status="CANCELLED")
    durable.pause_queue("emails")       # workers take none of its workflows until resumed
    durable.resume_queue("emails")

The filter keywords are `durable.list_workflows`'s. Cancel applies to the ENQUEUED and
PENDING workflows it matches, resume to the CANCELLED and DEAD_LETTER ones, each exactly
as `cancel_workflow` / `resume_workflow` would (a resume whose queue deduplication ID is
held again by a live workflow is skipped: matched, not changed). The coordinator works
in batches of 500, each committed before the next; `on_progress` is called after each
with a BulkProgress (running totals). A filter with no condition matches every workflow
of the namespace and needs `match_all=True` (else InvalidRequestError). See
docs/bulk-actions.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from durable._client import Client, default_client
from durable._core.specs import WorkflowStatus
from durable._management import list_request
from durable._queues import Queue, queue_name_of
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import operations_pb2 as opb

Status = WorkflowStatus | str | Iterable[WorkflowStatus | str] | None


@dataclass(frozen=True)
class BulkProgress:
    """A bulk action's running totals after a batch: workflows `matched` (in a status the
    action applies to) and `changed`; `done` on the last one."""

    matched: int
    changed: int
    done: bool


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did: `matched` workflows, of which `changed` were changed (0 for
    a dry run; fewer than matched when someone else changed some first, or a resume's
    deduplication ID was held)."""

    matched: int
    changed: int
    dry_run: bool


def bulk_filter(
    *,
    status: Status,
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    parent_workflow_id: str | None,
    queue_name: str | None,
    app_version: str | None,
    schedule_name: str | None,
    attributes: Mapping[str, str] | None,
) -> pb.ListWorkflowsRequest:
    """The ListWorkflowsRequest filter of a bulk action (list_workflows' checks)."""
    request = list_request(
        status,
        name,
        created_after,
        created_before,
        parent_workflow_id,
        queue_name,
        1,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    request.ClearField("page_size")
    return request


def bulk_request(
    kind: str, filters: dict[str, object], dry_run: bool, match_all: bool
) -> tuple[str, opb.CancelWorkflowsRequest | opb.ResumeWorkflowsRequest]:
    """The (method, request) of a bulk action: `kind` is "cancel" or "resume"."""
    for flag, value in (("dry_run", dry_run), ("match_all", match_all)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, not {value!r}")
    where = bulk_filter(**filters)  # type: ignore[arg-type]
    if kind == "cancel":
        return "CancelWorkflows", opb.CancelWorkflowsRequest(
            filter=where, dry_run=dry_run, match_all=match_all
        )
    return "ResumeWorkflows", opb.ResumeWorkflowsRequest(
        filter=where, dry_run=dry_run, match_all=match_all
    )


def progress_of(message: opb.BulkProgress) -> BulkProgress:
    return BulkProgress(message.matched, message.changed, message.done)


def _run(
    kind: str,
    filters: dict[str, object],
    dry_run: bool,
    match_all: bool,
    on_progress: Callable[[BulkProgress], object] | None,
    client: Client | None,
) -> BulkResult:
    method, request = bulk_request(kind, filters, dry_run, match_all)
    last = BulkProgress(0, 0, False)
    messages: Iterator[opb.BulkProgress] = (client or default_client()).bulk_action(method, request)
    for message in messages:
        last = progress_of(message)
        if on_progress is not None:
            on_progress(last)
    return BulkResult(last.matched, last.changed, dry_run)


def cancel_workflows(
    *,
    status: Status = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    dry_run: bool = False,
    match_all: bool = False,
    on_progress: Callable[[BulkProgress], object] | None = None,
    client: Client | None = None,
) -> BulkResult:
    """Cancel the ENQUEUED and PENDING workflows matching the filter (`list_workflows`'
    keywords), as `cancel_workflow` would each: a running one stops at its next step.
    `dry_run`: only count them. `match_all`: required when no filter is given (it then
    means every workflow of the namespace). `on_progress` is called after each committed
    batch (and once, done, at the end). Stopping early (an exception from `on_progress`,
    Ctrl-C) stops the action after the batch under way; earlier batches stay cancelled."""
    filters: dict[str, object] = dict(
        status=status,
        name=name,
        created_after=created_after,
        created_before=created_before,
        parent_workflow_id=parent_workflow_id,
        queue_name=queue_name,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    return _run("cancel", filters, dry_run, match_all, on_progress, client)


def resume_workflows(
    *,
    status: Status = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    dry_run: bool = False,
    match_all: bool = False,
    on_progress: Callable[[BulkProgress], object] | None = None,
    client: Client | None = None,
) -> BulkResult:
    """Resume the CANCELLED and DEAD_LETTER workflows matching the filter, as
    `resume_workflow` would each (they become ENQUEUED for a worker to continue); one
    whose queue deduplication ID is held again is skipped (matched, not changed). Other
    arguments as `cancel_workflows`."""
    filters: dict[str, object] = dict(
        status=status,
        name=name,
        created_after=created_after,
        created_before=created_before,
        parent_workflow_id=parent_workflow_id,
        queue_name=queue_name,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    return _run("resume", filters, dry_run, match_all, on_progress, client)


def pause_queue(queue: Queue | str, *, client: Client | None = None) -> None:
    """Pause a queue (idempotent): from when this returns, no worker is handed any of its
    workflows until `resume_queue`; those running go on. Survives coordinator restarts;
    `get_queue(...).paused` shows it. A queue never configured may be paused."""
    (client or default_client()).set_queue_paused(queue_name_of(queue), True)


def resume_queue(queue: Queue | str, *, client: Client | None = None) -> None:
    """Resume a paused queue (idempotent): its waiting workflows are handed out again."""
    (client or default_client()).set_queue_paused(queue_name_of(queue), False)
