"""Search attributes: validating them at the edge and SetAttributes (checkpointed as a
workflow's step)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from coordinator import validation, wire
from coordinator.errors import InvalidArgument
from coordinator.store import attributes as store
from durable.v1 import coordinator_pb2 as pb

if TYPE_CHECKING:
    from coordinator.service import CoordinatorService


MAX_ATTRIBUTES = 32
MAX_VALUE_LENGTH = 256
_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate(
    attributes: Mapping[str, str], field: str, *, removals: bool = False
) -> dict[str, str]:
    """Search attributes as given: at most MAX_ATTRIBUTES keys of 1-64 characters from
    [A-Za-z0-9._-], values of 1-MAX_VALUE_LENGTH characters without control characters
    (with `removals`, an empty value is allowed: it removes its key)."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(field, f"more than {MAX_ATTRIBUTES} keys")
    for key, value in attributes.items():
        if not _KEY.fullmatch(key):
            raise InvalidArgument(
                field, f"key {key[:70]!r} is not 1-64 characters of [A-Za-z0-9._-]"
            )
        if not value and not removals:
            raise InvalidArgument(field, f"the value of {key!r} is empty")
        if len(value) > MAX_VALUE_LENGTH or _CONTROL.search(value):
            raise InvalidArgument(
                field, f"the value of {key!r} is not up to {MAX_VALUE_LENGTH} printable characters"
            )
    return dict(attributes)


async def set_attributes(
    service: CoordinatorService, ns: str, request: pb.SetAttributesRequest
) -> pb.SetAttributesResponse:
    """SetAttributes: merge the request's attributes into the workflow's as its step
    `step_id` (see store.attributes.set_attributes); the count limit holds after the
    merge."""
    workflow_id = validation.workflow_id(request.workflow_id)
    step_id = validation.step_id(request.step_id)
    if not request.attributes:
        raise InvalidArgument("attributes", "required (at least one key)")
    given = validate(request.attributes, "attributes", removals=True)
    try:
        result = await store.set_attributes(
            service._pool,
            ns,
            workflow_id,
            step_id,
            given,
            max_count=MAX_ATTRIBUTES,
            executor_id=validation.executor_id(request.executor_id),
        )
    except store.OverLimit:
        raise InvalidArgument(
            "attributes", f"the workflow would have more than {MAX_ATTRIBUTES} keys"
        ) from None
    return pb.SetAttributesResponse(
        step=wire.step(result.step),
        already_recorded=result.already_recorded,
        attributes=result.attributes,
    )
