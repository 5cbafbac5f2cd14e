"""Durable workflows for Python, checkpointed through a durable coordinator.

import durable

@durable.step
def charge(order_id: str) -> str: ...

@durable.workflow
def checkout(order_id: str) -> str:
    durable.set_event("paymentURL", charge(order_id))
    return "done"

handle = durable.start_workflow(checkout, "order-1", workflow_id="checkout-order-1")
url = durable.get_event(handle.workflow_id, "paymentURL", timeout=60)
"""

from durable._client import Client, configure
from durable._connection import TLS
from durable._events import get_event, set_event, watch_event
from durable._payloads import RawPayload
from durable._retry import RetryPolicy
from durable._workflow import (
    WorkflowHandle,
    WorkflowStatus,
    current_workflow_id,
    retrieve_workflow,
    set_workflow_id,
    start_workflow,
    step,
    workflow,
)
from durable.errors import (
    CoordinatorError,
    CoordinatorUnavailableError,
    DurableError,
    InvalidRequestError,
    NonDeterminismError,
    NotInWorkflowError,
    PayloadError,
    RecordedError,
    UnauthenticatedError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowNotPendingError,
)

__all__ = [
    "TLS",
    "Client",
    "CoordinatorError",
    "CoordinatorUnavailableError",
    "DurableError",
    "InvalidRequestError",
    "NonDeterminismError",
    "NotInWorkflowError",
    "PayloadError",
    "RawPayload",
    "RecordedError",
    "RetryPolicy",
    "UnauthenticatedError",
    "WorkflowConflictError",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "WorkflowNotPendingError",
    "WorkflowStatus",
    "configure",
    "current_workflow_id",
    "get_event",
    "retrieve_workflow",
    "set_event",
    "set_workflow_id",
    "start_workflow",
    "step",
    "watch_event",
    "workflow",
]
