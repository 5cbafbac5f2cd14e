"""The workflow filter of a request (ListWorkflows, WatchWorkflows, the bulk actions),
validated at the edge."""

from __future__ import annotations

from coordinator import attributes, validation, wire
from coordinator.errors import InvalidArgument
from coordinator.store.filters import WorkflowFilter
from durable.v1 import coordinator_pb2 as pb


def from_request(request: pb.ListWorkflowsRequest, prefix: str = "") -> WorkflowFilter:
    """The filter fields of `request`; an error names the field (after `prefix`, e.g.
    "filter." for a request that embeds one)."""
    statuses = []
    for value in request.statuses:
        status = wire.status_from_wire(value)
        if status is None:
            raise InvalidArgument(f"{prefix}statuses", f"unknown status {value}")
        statuses.append(status)

    def name(value: str, field: str) -> str:
        return validation.name(value, prefix + field) if value else ""

    return WorkflowFilter(
        statuses=tuple(dict.fromkeys(statuses)),
        name=name(request.name, "name"),
        parent_workflow_id=validation.executor_id(
            request.parent_workflow_id, prefix + "parent_workflow_id"
        ),
        queue_name=name(request.queue_name, "queue_name"),
        app_version=(
            validation.workflow_id(request.app_version, prefix + "app_version")
            if request.app_version
            else ""
        ),
        schedule_name=name(request.schedule_name, "schedule_name"),
        attributes=attributes.validate(request.attributes, prefix + "attributes"),
        created_after=validation.timestamp(
            request.HasField("created_after"), request.created_after, prefix + "created_after"
        ),
        created_before=validation.timestamp(
            request.HasField("created_before"), request.created_before, prefix + "created_before"
        ),
    )
