"""The SDK's clients follow an event from its first value (GetEventRequest.from_first_value),
as the dashboard does to show an event's version history: over real gRPC and Postgres."""

from __future__ import annotations

import asyncio

import durable
import durable.aio
from durable import _payloads
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, finish, set_event, start_pending


def _history(messages: list[pb.GetEventResponse]) -> list[tuple[object, int]]:
    return [
        (_payloads.decode(m.event.value), m.event.version) for m in messages if m.HasField("event")
    ]


def test_sync_client_follows_from_the_first_value_then_live(coordinator: Coordinator) -> None:
    stub = coordinator.stub
    workflow_id = start_pending(stub)
    for step, value in enumerate((10, 50), start=1):
        set_event(stub, workflow_id, step, "progress", value)
    client = durable.Client(coordinator.address)
    try:
        stream = client.get_event(workflow_id, "progress", 20, follow=True, from_first=True)
        first = [next(stream), next(stream)]
        set_event(stub, workflow_id, 3, "progress", 100)
        live = next(stream)
        finish(stub, workflow_id)
        rest = list(stream)
    finally:
        client.close()
    assert _history([*first, live]) == [(10, 1), (50, 2), (100, 3)]
    assert [m.WhichOneof("outcome") for m in rest] == ["workflow_finished"]


def test_default_follow_still_starts_at_the_current_value(coordinator: Coordinator) -> None:
    stub = coordinator.stub
    workflow_id = start_pending(stub)
    for step, value in enumerate((10, 50), start=1):
        set_event(stub, workflow_id, step, "progress", value)
    finish(stub, workflow_id)
    client = durable.Client(coordinator.address)
    try:
        messages = list(client.get_event(workflow_id, "progress", 20, follow=True))
    finally:
        client.close()
    assert _history(messages) == [(50, 2)]


def test_async_client_follows_a_finished_workflows_whole_history(
    coordinator: Coordinator,
) -> None:
    stub = coordinator.stub
    workflow_id = start_pending(stub)
    for step, value in enumerate(("a", "b", "c"), start=1):
        set_event(stub, workflow_id, step, "state", value)
    finish(stub, workflow_id)

    async def follow() -> list[pb.GetEventResponse]:
        async with durable.aio.AsyncClient(coordinator.address) as client:
            stream = client.get_event(workflow_id, "state", 20, follow=True, from_first=True)
            return [message async for message in stream]

    messages = asyncio.run(follow())
    assert _history(messages) == [("a", 1), ("b", 2), ("c", 3)]
    assert messages[-1].WhichOneof("outcome") == "workflow_finished"
