"""How a StartWorkflow request asks for its workflow to be started: on a queue (and its
partition), later (a delay or a time), debounced. Validated here, at the edge, into the
fields of store.workflows.StartOptions; the timeout and executor are the servicer's.

A delay or debounce goes with a queue (the workflow is due on its queue, then waits for
the queue's limits) and with a delay a deduplication ID (the delayed workflow holds it
while it waits); a debounce refuses a deduplication ID (both would keep one live workflow
per key, with opposite rules for the second start) and a parent (see below). Nothing here
runs in the starter's session: a delayed start refuses an executor_id."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from coordinator import attributes, validation
from coordinator.errors import InvalidArgument
from durable.v1 import coordinator_pb2 as pb

# The furthest ahead a start may be delayed (a year), and the longest debounce (a day).
MAX_DELAY_SECONDS = 365 * 24 * 3600.0
MAX_DEBOUNCE_SECONDS = 24 * 3600.0


def queue_options(request: pb.StartWorkflowRequest) -> dict[str, Any]:
    """StartOptions fields of an enqueue: none without a queue_name."""
    if not request.queue_name:
        for field in ("priority", "deduplication_id", "partition_key"):
            if getattr(request, field):
                raise InvalidArgument(field, "only with queue_name")
        return {}
    if request.executor_id:
        raise InvalidArgument(
            "queue_name", "not allowed with executor_id (a queue's worker runs it)"
        )
    return {
        "queue_name": validation.name(request.queue_name, "queue_name"),
        "priority": request.priority,
        "deduplication_id": (
            validation.name(request.deduplication_id, "deduplication_id")
            if request.deduplication_id
            else None
        ),
        "partition_key": (
            validation.name(request.partition_key, "partition_key")
            if request.partition_key
            else None
        ),
    }


def timing_options(request: pb.StartWorkflowRequest) -> dict[str, Any]:
    """StartOptions fields of a delayed or debounced start: none for a start now."""
    delayed = request.HasField("delay")
    at = request.HasField("start_at")
    debounced = bool(request.debounce_key) or request.HasField("debounce")
    if not (delayed or at or debounced):
        return {}
    first = "delay" if delayed else "start_at" if at else "debounce_key"
    if request.executor_id:
        raise InvalidArgument(first, "not allowed with executor_id (a worker claims it when due)")
    if delayed and at:
        raise InvalidArgument("start_at", "not allowed with delay")
    if debounced:
        if delayed or at:
            raise InvalidArgument("debounce_key", "not allowed with delay or start_at")
        if request.deduplication_id:
            # A debounce already keeps one waiting workflow per key; with a deduplication
            # ID, which of the two a later start of the burst would meet is not defined.
            raise InvalidArgument("deduplication_id", "not allowed with debounce_key")
        if request.HasField("parent"):
            # A child's start is its parent's step, recorded with the child's own ID: a
            # start that may return another workflow could not be replayed.
            raise InvalidArgument("debounce_key", "not allowed for a child workflow (parent)")
        if not request.debounce_key:
            raise InvalidArgument("debounce_key", "required with debounce")
        if not request.HasField("debounce"):
            raise InvalidArgument("debounce", "required with debounce_key")
        quiet = validation.duration(
            True,
            request.debounce,
            "debounce",
            default=0.0,
            minimum=0.001,
            maximum=MAX_DEBOUNCE_SECONDS,
        )
        return {
            "debounce_key": validation.name(request.debounce_key, "debounce_key"),
            "debounce": timedelta(seconds=quiet),
            # Due once the burst has been quiet this long (later starts move it on).
            "delay": timedelta(seconds=quiet),
        }
    if delayed:
        seconds = validation.duration(
            True, request.delay, "delay", default=0.0, minimum=0.0, maximum=MAX_DELAY_SECONDS
        )
        return {"delay": timedelta(seconds=seconds)}
    start_at = validation.timestamp(True, request.start_at, "start_at")
    assert start_at is not None
    if start_at > datetime.now(timezone.utc) + timedelta(seconds=MAX_DELAY_SECONDS):
        raise InvalidArgument("start_at", "more than 365 days ahead")
    return {"start_at": start_at}


def attribute_options(request: pb.StartWorkflowRequest) -> dict[str, Any]:
    """StartOptions fields of the search attributes a start records (an existing workflow
    keeps its own)."""
    if not request.attributes:
        return {}
    return {"attributes": attributes.validate(request.attributes, "attributes")}
