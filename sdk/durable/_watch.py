"""Watching workflows: a live stream of their status changes (WatchWorkflows), resumable
by cursor. The sync face; `durable.aio.watch_workflows` is the async one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from durable._client import Client, default_client
from durable._core.specs import WorkflowStatus
from durable._management import WorkflowInfo, list_request, workflow_info
from durable.v1 import coordinator_pb2 as pb


@dataclass(frozen=True)
class WorkflowChange:
    """One status change of a workflow: `status` is the status it changed to (the
    workflow's may have moved on since), `cursor` resumes a watch after this change
    (`watch_workflows(after=...)`), `workflow` is the workflow as read with the change,
    without its input and output (read them with `get_workflow`)."""

    workflow_id: str
    name: str
    status: WorkflowStatus
    cursor: str
    changed_at: datetime
    workflow: WorkflowInfo


def watch_request(
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None,
    name: str | None,
    queue_name: str | None,
    attributes: Mapping[str, str] | None,
    parent_workflow_id: str | None,
    app_version: str | None,
    schedule_name: str | None,
) -> pb.ListWorkflowsRequest:
    """The filter of a watch: list_workflows's, without the created_* bounds and pages."""
    request = list_request(
        status,
        name,
        None,
        None,
        parent_workflow_id,
        queue_name,
        1,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    request.ClearField("page_size")
    return request


def change(message: pb.WorkflowChange) -> WorkflowChange:
    info = workflow_info(message.workflow)
    return WorkflowChange(
        workflow_id=info.workflow_id,
        name=info.name,
        status=info.status,
        cursor=message.cursor,
        changed_at=message.change_time.ToDatetime(tzinfo=timezone.utc),
        workflow=info,
    )


def watch_workflows(
    *,
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
    name: str | None = None,
    queue_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    parent_workflow_id: str | None = None,
    app_version: str | None = None,
    schedule_name: str | None = None,
    after: str | None = None,
    timeout: float | None = None,
    client: Client | None = None,
) -> Iterator[WorkflowChange]:
    """Each status change (created, claimed, succeeded, failed, cancelled, resumed...) of
    the workflows matching the filters, as it happens, in order.

    Filters as `list_workflows` (a `status` filter matches the status changed to; the
    others test the workflow as it is when the change is read). `after`: a change's
    `cursor`, to resume after it (missing nothing in between); None: from now. `timeout`:
    seconds until the iteration ends; None: never. When the coordinator becomes
    unavailable the watch reconnects by itself after its last change, with no gap and no
    repeat. Raises CoordinatorError with reason CURSOR_EXPIRED for a cursor whose change
    is no longer kept (retention deleted its workflow): watch again from now. Stopping
    the iteration (break, close()) closes the stream.
    """
    where = watch_request(
        status, name, queue_name, attributes, parent_workflow_id, app_version, schedule_name
    )
    messages = (client or default_client()).watch_workflows(
        where, after=after or "", timeout=timeout
    )
    try:
        for message in messages:
            if message.HasField("change"):
                yield change(message.change)
    finally:
        messages.close()  # type: ignore[attr-defined]
