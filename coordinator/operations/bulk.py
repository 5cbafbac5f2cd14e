"""Bulk actions by filter (CancelWorkflows, ResumeWorkflows) and pausing queues.

The filter is ListWorkflows' (validated by workflow_filter.from_request, its errors naming
`filter.<field>`); an empty one matches the whole namespace and needs `match_all`. A dry
run answers one message with the count; otherwise store/bulk.py works in committed batches
and each batch's progress is streamed as it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coordinator import validation, wire, workflow_filter
from coordinator.errors import InvalidArgument
from coordinator.store import bulk, queues
from coordinator.store.filters import WorkflowFilter
from durable.v1 import operations_pb2 as opb

if TYPE_CHECKING:
    from coordinator.operations.service import OperationsService


def _filter(request: opb.CancelWorkflowsRequest | opb.ResumeWorkflowsRequest) -> WorkflowFilter:
    where = workflow_filter.from_request(request.filter, prefix="filter.")
    if where.is_empty() and not request.match_all:
        raise InvalidArgument(
            "match_all",
            "the filter is empty, so it matches every workflow of the namespace:"
            " set match_all to mean that",
        )
    return where


async def _progress(
    service: OperationsService,
    ns: str,
    request: opb.CancelWorkflowsRequest | opb.ResumeWorkflowsRequest,
    action: bulk.Action,
) -> AsyncIterator[opb.BulkProgress]:
    where = _filter(request)
    if request.dry_run:
        matched = await bulk.count(service.pool, ns, where, action)
        yield opb.BulkProgress(matched=matched, changed=0, done=True)
        return
    async for progress in bulk.run(service.pool, ns, where, action):
        yield opb.BulkProgress(
            matched=progress.matched, changed=progress.changed, done=progress.done
        )


async def cancel_workflows(
    service: OperationsService, ns: str, request: opb.CancelWorkflowsRequest
) -> AsyncIterator[opb.CancelWorkflowsResponse]:
    async for progress in _progress(service, ns, request, bulk.CANCEL):
        yield opb.CancelWorkflowsResponse(progress=progress)


async def resume_workflows(
    service: OperationsService, ns: str, request: opb.ResumeWorkflowsRequest
) -> AsyncIterator[opb.ResumeWorkflowsResponse]:
    async for progress in _progress(service, ns, request, bulk.RESUME):
        yield opb.ResumeWorkflowsResponse(progress=progress)


async def pause_queue(
    service: OperationsService, ns: str, request: opb.PauseQueueRequest
) -> opb.PauseQueueResponse:
    name = validation.name(request.name, "name")
    config = await queues.set_paused(service.pool, ns, name, paused=True)
    return opb.PauseQueueResponse(queue=wire.queue_config(config))


async def resume_queue(
    service: OperationsService, ns: str, request: opb.ResumeQueueRequest
) -> opb.ResumeQueueResponse:
    name = validation.name(request.name, "name")
    config = await queues.set_paused(service.pool, ns, name, paused=False)
    return opb.ResumeQueueResponse(queue=wire.queue_config(config))
