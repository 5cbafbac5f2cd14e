"""Running a deployment for months (sync face): retention of finished workflows and
deleting workflows. The async face's twins are in durable._aio.operations; both read the
same messages through `retention_policy` here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from durable._client import Client, default_client
from durable._core.durations import Seconds, optional_seconds
from durable.v1 import operations_pb2 as opb

# --- retention and DeleteWorkflow ---------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """The namespace's retention: finished workflows (SUCCESS, ERROR, CANCELLED,
    DEAD_LETTER) are deleted `finished_after` their last change, with their steps, events
    and messages; None: kept forever. `from_config`: the coordinator's --retention default
    applies (the namespace has no policy of its own)."""

    finished_after: timedelta | None
    from_config: bool = False


def retention_policy(message: opb.RetentionPolicy) -> RetentionPolicy:
    if not message.HasField("finished_after"):
        return RetentionPolicy(None, message.from_config)
    return RetentionPolicy(message.finished_after.ToTimedelta(), message.from_config)


def set_retention(
    finished_after: Seconds | None, *, client: Client | None = None
) -> RetentionPolicy:
    """Delete the namespace's finished workflows `finished_after` (seconds or a timedelta;
    at least a minute) after their last change; None removes the namespace's policy (the
    coordinator's --retention default, if any, applies again). Returns the policy in force.
    A policy under a minute: InvalidRequestError."""
    seconds = optional_seconds(finished_after)
    return retention_policy((client or default_client()).set_retention(seconds))


def get_retention(*, client: Client | None = None) -> RetentionPolicy:
    """The namespace's retention policy in force."""
    return retention_policy((client or default_client()).get_retention())


def delete_workflow(
    workflow_id: str, include_children: bool = False, *, client: Client | None = None
) -> int:
    """Delete a finished workflow with its steps, events and messages (with
    `include_children`, its child workflows too, recursively); how many workflows were
    deleted (0: it did not exist). An unfinished one (any, with its children):
    WorkflowNotFinishedError naming it, and nothing is deleted. Children
    deleted without their parent keep its ID as `parent_workflow_id`."""
    return (client or default_client()).delete_workflow(workflow_id, include_children)
