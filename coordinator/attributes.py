"""Search attributes: validating them at the edge and SetAttributes (checkpointed as a
workflow's step)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.errors import Unimplemented
from durable.v1 import coordinator_pb2 as pb

if TYPE_CHECKING:
    from coordinator.service import CoordinatorService


async def set_attributes(
    service: CoordinatorService, ns: str, request: pb.SetAttributesRequest
) -> pb.SetAttributesResponse:
    raise Unimplemented("SetAttributes")
