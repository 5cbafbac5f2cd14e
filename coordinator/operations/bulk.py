"""Bulk actions by filter (CancelWorkflows, ResumeWorkflows) and pausing queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coordinator.errors import Unimplemented
from durable.v1 import operations_pb2 as opb

if TYPE_CHECKING:
    from coordinator.operations.service import OperationsService


async def cancel_workflows(
    service: OperationsService, ns: str, request: opb.CancelWorkflowsRequest
) -> AsyncIterator[opb.CancelWorkflowsResponse]:
    raise Unimplemented("CancelWorkflows")
    yield  # an async generator


async def resume_workflows(
    service: OperationsService, ns: str, request: opb.ResumeWorkflowsRequest
) -> AsyncIterator[opb.ResumeWorkflowsResponse]:
    raise Unimplemented("ResumeWorkflows")
    yield  # an async generator


async def pause_queue(
    service: OperationsService, ns: str, request: opb.PauseQueueRequest
) -> opb.PauseQueueResponse:
    raise Unimplemented("PauseQueue")


async def resume_queue(
    service: OperationsService, ns: str, request: opb.ResumeQueueRequest
) -> opb.ResumeQueueResponse:
    raise Unimplemented("ResumeQueue")
