"""WatchWorkflows: a filtered stream of workflow status changes, resumable by cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coordinator.errors import Unimplemented
from durable.v1 import coordinator_pb2 as pb

if TYPE_CHECKING:
    from coordinator.service import CoordinatorService


async def watch_workflows(
    service: CoordinatorService, ns: str, request: pb.WatchWorkflowsRequest
) -> AsyncIterator[pb.WatchWorkflowsResponse]:
    raise Unimplemented("WatchWorkflows")
    yield  # an async generator
