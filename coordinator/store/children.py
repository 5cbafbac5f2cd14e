"""Child workflows: a workflow starting another, checkpointed as one of its steps.

The parent's START_WORKFLOW step and the child's row are written in one transaction,
under the parent's write guard (steps.WRITABLE): either both exist or neither, so a
replaying parent always finds the child it started, and a finished, cancelled or taken-over
parent starts nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace

from psycopg_pool import AsyncConnectionPool

from coordinator.errors import StepNameMismatch
from coordinator.store import workflows
from coordinator.store.records import Outcome, Payload, StepKind, WorkflowRecord
from coordinator.store.steps import WRITABLE, resolve_unrecorded

# The step's output is the child's workflow ID as a JSON string.
_RECORD_START = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data)
SELECT %(wf)s, %(ns)s, %(step)s, %(name)s, 'START_WORKFLOW', 'json', %(child)s
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING step_id"""


@dataclass(frozen=True)
class StepRef:
    """The parent's step the start is checkpointed as."""

    workflow_id: str
    step_id: int
    executor_id: str = ""


def _child_id(outcome: Outcome) -> str:
    """The child ID a START_WORKFLOW step recorded (written only by this module)."""
    assert isinstance(outcome, Payload)
    value = json.loads(outcome.data)
    assert isinstance(value, str)
    return value


async def start_child(
    pool: AsyncConnectionPool,
    namespace: str,
    parent: StepRef,
    workflow_id: str,
    name: str,
    input: Payload | None,
    options: workflows.StartOptions,
) -> tuple[WorkflowRecord, bool]:
    """Start workflow `workflow_id` ('' : a new UUID) as a child of `parent`, or return the
    child its step recorded; the bool says whether the child was created now.

    Replaying a recorded step returns the recorded child, taken over for the caller's
    executor only when no live session runs it. Raises WorkflowNotFound, WorkflowNotPending
    or NotOwner for the parent, StepNameMismatch when the step recorded another operation or
    another child ID, and what `workflows.start` raises for the child.
    """
    child_id = workflow_id or str(uuid.uuid4())
    options = replace(options, parent_workflow_id=parent.workflow_id)
    params = {
        "ns": namespace,
        "wf": parent.workflow_id,
        "step": parent.step_id,
        "exec": parent.executor_id,
        "name": name,
        "child": json.dumps(child_id).encode(),
    }
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_RECORD_START, params)
        if await cur.fetchone() is not None:
            return await workflows.start_on(conn, namespace, child_id, name, input, options)
        recorded = await resolve_unrecorded(
            conn,
            namespace,
            parent.workflow_id,
            parent.step_id,
            StepKind.START_WORKFLOW,
            name,
            parent.executor_id,
        )
        recorded_id = _child_id(recorded.outcome)
        if workflow_id and workflow_id != recorded_id:
            raise StepNameMismatch(
                parent.workflow_id,
                parent.step_id,
                f"start_workflow {name!r} with ID {recorded_id!r}",
                f"start_workflow {name!r} with ID {workflow_id!r}",
            )
        # A replay: the child exists, so nothing new is created (not even an enqueue).
        return await workflows.start_on(
            conn, namespace, recorded_id, name, input, options, take_over_unowned_only=True
        )
