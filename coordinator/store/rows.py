"""Turning result rows into records. Column lists live beside the queries that use them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from coordinator.store.records import (
    Failure,
    Outcome,
    Payload,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
)

Row = tuple[Any, ...]

WORKFLOW_COLUMNS = """workflow_id, name, status, input_encoding, input_data,
    output_encoding, output_data, error_type, error_message, error_details,
    created_at, updated_at, executor_id, recovery_attempts, deadline_at, forked_from,
    queue_name, priority, deduplication_id, parent_workflow_id, app_version, schedule_name,
    scheduled_at, due_at, partition_key, debounce_key, attributes"""

STEP_COLUMNS = """step_id, name, kind, output_encoding, output_data,
    error_type, error_message, error_details, recorded_at, started_at, attempts,
    deadline_at, timed_out"""
STEP_WIDTH = STEP_COLUMNS.count(",") + 1


def outcome(
    encoding: str | None,
    data: bytes | None,
    error_type: str | None,
    error_message: str | None,
    error_details: str | None,
) -> Outcome | None:
    if encoding is not None:
        return Payload(encoding, bytes(data or b""))
    if error_type is not None:
        return Failure(error_type, error_message or "", error_details or "")
    return None


def outcome_columns(value: Outcome) -> dict[str, Any]:
    """The five outcome columns as query parameters."""
    if isinstance(value, Payload):
        return {
            "out_enc": value.encoding,
            "out_data": value.data,
            "err_type": None,
            "err_msg": None,
            "err_details": None,
        }
    return {
        "out_enc": None,
        "out_data": None,
        "err_type": value.type,
        "err_msg": value.message,
        "err_details": value.details,
    }


def workflow(row: Row) -> WorkflowRecord:
    wid, name, status, in_enc, in_data, out_enc, out_data, e_type, e_msg, e_det = row[:10]
    created_at: datetime = row[10]
    updated_at: datetime = row[11]
    executor_id, recovery_attempts, deadline_at, forked_from = row[12:16]
    queue_name, priority, deduplication_id, parent_workflow_id = row[16:20]
    app_version, schedule_name, scheduled_at = row[20:23]
    due_at, partition_key, debounce_key, attributes = row[23:27]
    return WorkflowRecord(
        workflow_id=wid,
        name=name,
        status=Status(status),
        input=Payload(in_enc, bytes(in_data)) if in_enc is not None else None,
        result=outcome(out_enc, out_data, e_type, e_msg, e_det),
        created_at=created_at,
        updated_at=updated_at,
        executor_id=executor_id,
        recovery_attempts=recovery_attempts,
        deadline_at=deadline_at,
        forked_from=forked_from,
        queue_name=queue_name,
        priority=priority,
        deduplication_id=deduplication_id,
        parent_workflow_id=parent_workflow_id,
        app_version=app_version,
        schedule_name=schedule_name,
        scheduled_at=scheduled_at,
        due_at=due_at,
        partition_key=partition_key,
        debounce_key=debounce_key,
        attributes=attributes or {},
    )


def step(row: Row) -> StepRecord:
    step_id, name, kind, out_enc, out_data, e_type, e_msg, e_det, recorded_at = row[:9]
    started_at, attempts, deadline_at, timed_out = row[9:13]
    result = outcome(out_enc, out_data, e_type, e_msg, e_det)
    # The table's CHECK constraint guarantees exactly one outcome.
    assert result is not None
    return StepRecord(
        step_id,
        name,
        StepKind(kind),
        result,
        recorded_at,
        started_at,
        attempts,
        deadline_at=deadline_at,
        timed_out=timed_out,
    )
