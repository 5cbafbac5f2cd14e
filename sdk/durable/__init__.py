"""Durable workflows for Python, checkpointed through a durable coordinator.

import durable

@durable.step
def charge(order_id: str) -> str: ...

@durable.workflow
def checkout(order_id: str) -> str:
    durable.set_event("paymentURL", charge(order_id))
    return "done"

with durable.set_workflow_id("checkout-order-1"):
    handle = durable.start_workflow(checkout, "order-1")
url = durable.get_event(handle.workflow_id, "paymentURL", timeout=60)

The same decorators on `async def` functions make async workflows and steps, run on an
event loop through `durable.aio` (the async face: the same calls, awaited).
"""

from durable._attributes import set_attributes
from durable._bulk import (
    BulkProgress,
    BulkResult,
    cancel_workflows,
    pause_queue,
    resume_queue,
    resume_workflows,
)
from durable._client import Client, configure
from durable._connection import TLS
from durable._core.schedules import ScheduleInfo, scheduled
from durable._core.specs import WorkflowStatus
from durable._events import get_event, set_event, watch_event
from durable._management import (
    FailureInfo,
    StepAttemptInfo,
    StepInfo,
    WorkflowInfo,
    cancel_workflow,
    fork_workflow,
    get_workflow,
    list_events,
    list_steps,
    list_workflows,
    resume_workflow,
)
from durable._messages import recv, send
from durable._operations import RetentionPolicy, delete_workflow, get_retention, set_retention
from durable._patches import deprecate_patch, patched
from durable._payloads import PayloadCodec, RawPayload
from durable._payloads import set_codecs as set_payload_codecs
from durable._queues import Queue, QueueInfo, QueueLoad, get_queue, set_enqueue_options
from durable._retry import RetryPolicy
from durable._schedules import (
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    scheduled_time,
    set_schedule,
    trigger_schedule,
)
from durable._sleep import sleep
from durable._step_retry import StepRetry
from durable._steps import set_step_timeout, step, step_idempotency_key
from durable._watch import WorkflowChange, watch_workflows
from durable._worker import Worker
from durable._workflow import (
    WorkflowHandle,
    current_workflow_id,
    retrieve_workflow,
    set_start_options,
    set_workflow_id,
    set_workflow_timeout,
    start_workflow,
    workflow,
)
from durable.errors import (
    CoordinatorError,
    CoordinatorUnavailableError,
    DurableError,
    InvalidRequestError,
    NonDeterminismError,
    NotInWorkflowError,
    PayloadCodecError,
    PayloadError,
    QueueDeduplicatedError,
    RecordedError,
    StepTimeoutError,
    UnauthenticatedError,
    WorkflowCancelledError,
    WorkflowConflictError,
    WorkflowDeadLetterError,
    WorkflowNotFinishedError,
    WorkflowNotFoundError,
    WorkflowNotPendingError,
    WorkflowOwnershipLostError,
)

__all__ = [
    "TLS",
    "BulkProgress",
    "BulkResult",
    "Client",
    "CoordinatorError",
    "CoordinatorUnavailableError",
    "DurableError",
    "FailureInfo",
    "InvalidRequestError",
    "NonDeterminismError",
    "NotInWorkflowError",
    "PayloadCodec",
    "PayloadCodecError",
    "PayloadError",
    "Queue",
    "QueueDeduplicatedError",
    "QueueInfo",
    "QueueLoad",
    "RawPayload",
    "RecordedError",
    "RetentionPolicy",
    "RetryPolicy",
    "ScheduleInfo",
    "StepAttemptInfo",
    "StepInfo",
    "StepRetry",
    "StepTimeoutError",
    "UnauthenticatedError",
    "Worker",
    "WorkflowCancelledError",
    "WorkflowChange",
    "WorkflowConflictError",
    "WorkflowDeadLetterError",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFinishedError",
    "WorkflowNotFoundError",
    "WorkflowNotPendingError",
    "WorkflowOwnershipLostError",
    "WorkflowStatus",
    "cancel_workflow",
    "cancel_workflows",
    "configure",
    "current_workflow_id",
    "delete_schedule",
    "delete_workflow",
    "deprecate_patch",
    "fork_workflow",
    "get_event",
    "get_queue",
    "get_retention",
    "get_schedule",
    "get_workflow",
    "list_events",
    "list_schedules",
    "list_steps",
    "list_workflows",
    "patched",
    "pause_queue",
    "pause_schedule",
    "recv",
    "resume_queue",
    "resume_schedule",
    "resume_workflow",
    "resume_workflows",
    "retrieve_workflow",
    "scheduled",
    "scheduled_time",
    "send",
    "set_attributes",
    "set_enqueue_options",
    "set_event",
    "set_payload_codecs",
    "set_retention",
    "set_schedule",
    "set_start_options",
    "set_step_timeout",
    "set_workflow_id",
    "set_workflow_timeout",
    "sleep",
    "start_workflow",
    "step",
    "step_idempotency_key",
    "trigger_schedule",
    "watch_event",
    "watch_workflows",
    "workflow",
]
