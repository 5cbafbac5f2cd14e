"""Retention of finished workflows (SetRetention, GetRetention, the clean-up loop) and
DeleteWorkflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.errors import Unimplemented
from durable.v1 import operations_pb2 as opb

if TYPE_CHECKING:
    from coordinator.operations.service import OperationsService


async def set_retention(
    service: OperationsService, ns: str, request: opb.SetRetentionRequest
) -> opb.SetRetentionResponse:
    raise Unimplemented("SetRetention")


async def get_retention(
    service: OperationsService, ns: str, request: opb.GetRetentionRequest
) -> opb.GetRetentionResponse:
    raise Unimplemented("GetRetention")


async def delete_workflow(
    service: OperationsService, ns: str, request: opb.DeleteWorkflowRequest
) -> opb.DeleteWorkflowResponse:
    raise Unimplemented("DeleteWorkflow")
