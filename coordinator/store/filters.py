"""Which workflows a request means: the filter ListWorkflows, WatchWorkflows and the bulk
actions share, as SQL over durable.workflows and as a test of one workflow record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coordinator.store.records import Status, WorkflowRecord


@dataclass(frozen=True)
class WorkflowFilter:
    """Every field is a condition that must hold; an empty field holds for all."""

    statuses: tuple[Status, ...] = ()
    name: str = ""
    parent_workflow_id: str = ""
    queue_name: str = ""
    app_version: str = ""
    schedule_name: str = ""
    # Every key must have this value (a jsonb containment, served by the GIN index).
    attributes: dict[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None

    def is_empty(self) -> bool:
        """True when the filter matches every workflow of the namespace."""
        return self == WorkflowFilter()

    def where(self, alias: str = "w") -> str:
        """The SQL conditions (joined by AND, parameters prefixed `f_`, from `params`) for
        a query over durable.workflows aliased `alias`; the query filters the namespace."""
        a = alias
        return f"""(cardinality(%(f_statuses)s::text[]) = 0
        OR {a}.status = ANY(%(f_statuses)s::text[]))
   AND (%(f_name)s = '' OR {a}.name = %(f_name)s)
   AND (%(f_parent)s = '' OR {a}.parent_workflow_id = %(f_parent)s)
   AND (%(f_queue)s = '' OR {a}.queue_name = %(f_queue)s)
   AND (%(f_version)s = '' OR {a}.app_version = %(f_version)s)
   AND (%(f_schedule)s = '' OR {a}.schedule_name = %(f_schedule)s)
   AND (%(f_attributes)s::jsonb = '{{}}'::jsonb OR {a}.attributes @> %(f_attributes)s::jsonb)
   AND (%(f_after)s::timestamptz IS NULL OR {a}.created_at >= %(f_after)s)
   AND (%(f_before)s::timestamptz IS NULL OR {a}.created_at < %(f_before)s)"""

    def params(self) -> dict[str, Any]:
        return {
            "f_statuses": [s.value for s in self.statuses],
            "f_name": self.name,
            "f_parent": self.parent_workflow_id,
            "f_queue": self.queue_name,
            "f_version": self.app_version,
            "f_schedule": self.schedule_name,
            "f_attributes": json.dumps(self.attributes, sort_keys=True),
            "f_after": self.created_after,
            "f_before": self.created_before,
        }

    def matches(self, record: WorkflowRecord) -> bool:
        """Whether the filter holds for `record` (as the SQL would decide)."""
        return (
            (not self.statuses or record.status in self.statuses)
            and (not self.name or record.name == self.name)
            and (
                not self.parent_workflow_id or record.parent_workflow_id == self.parent_workflow_id
            )
            and (not self.queue_name or record.queue_name == self.queue_name)
            and (not self.app_version or record.app_version == self.app_version)
            and (not self.schedule_name or record.schedule_name == self.schedule_name)
            and all(record.attributes.get(k) == v for k, v in self.attributes.items())
            and (self.created_after is None or record.created_at >= self.created_after)
            and (self.created_before is None or record.created_at < self.created_before)
        )
