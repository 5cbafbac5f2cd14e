"""A workflow whose recorded history is larger than one StartWorkflow reply carries (the
coordinator returns a prefix, `history_truncated`): both faces page in the rest before
replaying, and no recorded step runs again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

import durable
import durable.aio
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, new_id, payload, running_coordinator

# Payloads of about 1 MB: six of them pass the 2 MiB history budget of a start's reply.
PAYLOAD_LIMIT = 1_100_000
STEPS = 6
runs: list[tuple[str, int]] = []
crash: set[str] = set()


class Crash(BaseException):
    """The worker died here: not the workflow's outcome, so it stays PENDING."""


@durable.step(name="tests.large_history.big")
def big(label: str, n: int) -> str:
    runs.append((label, n))
    return chr(ord("a") + n) * 999_000


@durable.step(name="tests.large_history.big_async")
async def big_async(label: str, n: int) -> str:
    runs.append((label, n))
    return chr(ord("a") + n) * 999_000


@durable.workflow(name="tests.large_history.sync")
def sync_flow(label: str) -> list[str]:
    firsts = [big(label, n)[0] for n in range(STEPS)]
    if label in crash:
        raise Crash
    return firsts


@durable.workflow(name="tests.large_history.async")
async def async_flow(label: str) -> list[str]:
    firsts = [(await big_async(label, n))[0] for n in range(STEPS)]
    if label in crash:
        raise Crash
    return firsts


@pytest.fixture(scope="module")
def big_coordinator(database_url: str) -> Iterator[Coordinator]:
    with running_coordinator(database_url, "--max-payload-bytes", str(PAYLOAD_LIMIT)) as c:
        yield c


def run_sync(address: str, workflow_id: str) -> list[str]:
    client = durable.configure(address)
    try:
        with durable.set_workflow_id(workflow_id):
            result: list[str] = sync_flow(workflow_id)
            return result
    finally:
        client.close()


def run_async(address: str, workflow_id: str) -> list[str]:
    async def main() -> list[str]:
        durable.aio.configure(address)
        try:
            with durable.aio.set_workflow_id(workflow_id):
                result: list[str] = await async_flow(workflow_id)
                return result
        finally:
            await durable.aio.close()

    return asyncio.run(asyncio.wait_for(main(), timeout=60))


@pytest.mark.parametrize(
    ("run", "name"),
    [(run_sync, "tests.large_history.sync"), (run_async, "tests.large_history.async")],
    ids=["sync", "async"],
)
def test_a_history_larger_than_a_start_reply_replays_without_rerunning(
    big_coordinator: Coordinator, run: Callable[[str, str], list[str]], name: str
) -> None:
    workflow_id = new_id("large-history")
    crash.add(workflow_id)
    with pytest.raises(Crash):
        run(big_coordinator.address, workflow_id)
    crash.discard(workflow_id)
    assert [n for label, n in runs if label == workflow_id] == list(range(STEPS))
    # The start's reply holds only a prefix of the six ~1 MB steps.
    started = big_coordinator.stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, input=payload({})),
        timeout=30,
    )
    assert started.history_truncated and len(started.history) < STEPS

    assert run(big_coordinator.address, workflow_id) == [chr(ord("a") + n) for n in range(STEPS)]
    assert [n for label, n in runs if label == workflow_id] == list(range(STEPS))
