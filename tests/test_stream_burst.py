"""A burst of new GetEvent follow streams, all opened at once (clients re-opening their
watches after a coordinator restart): every one is served. gRPC core queues calls the
event loop has not accepted yet and, by default, drops queued calls at random past 1,000
with a bare CANCELLED; the coordinator raises that limit (coordinator/server.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import grpc

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from tests.support import RPC_TIMEOUT, Coordinator, duration, new_id, payload

if TYPE_CHECKING:  # only in the generated type stubs
    from durable.v1.coordinator_pb2_grpc import CoordinatorServiceAsyncStub as AsyncStub

# Well past gRPC's default backlog of 1,000 unaccepted calls: without the raised limit a
# few hundred of these fail on a 2-core machine. Opening them takes a few seconds.
STREAMS = 3000
CHANNELS = 6
WORKFLOWS = 30
WAIT = 60.0


async def _first_message(stub: AsyncStub, workflow_id: str) -> str:
    """How a follow stream starts: "event" when its first message is the value set."""
    request = pb.GetEventRequest(
        workflow_id=workflow_id, key="tick", follow=True, timeout=duration(WAIT)
    )
    call = stub.GetEvent(request, timeout=WAIT + 10)
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as error:
        return error.code().name
    finally:
        call.cancel()
    if message is grpc.aio.EOF:
        return "EOF"
    assert isinstance(message, pb.GetEventResponse)
    return message.WhichOneof("outcome") or "empty"


async def _burst(address: str) -> Counter[str]:
    # A connection per channel, as separate clients would have.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(CHANNELS)]
    try:
        stubs: list[AsyncStub] = [pb_grpc.CoordinatorServiceStub(c) for c in channels]
        workflows = [new_id("burst") for _ in range(WORKFLOWS)]
        for workflow_id in workflows:
            await stubs[0].StartWorkflow(
                pb.StartWorkflowRequest(workflow_id=workflow_id, name="burst"),
                timeout=RPC_TIMEOUT,
            )
            await stubs[0].SetEvent(
                pb.SetEventRequest(
                    workflow_id=workflow_id, step_id=1, key="tick", value=payload(1)
                ),
                timeout=RPC_TIMEOUT,
            )
        for channel in channels:  # connected before the burst, so the burst is all calls
            await asyncio.wait_for(channel.channel_ready(), RPC_TIMEOUT)
        outcomes = await asyncio.gather(
            *(_first_message(stubs[n % CHANNELS], workflows[n % WORKFLOWS]) for n in range(STREAMS))
        )
        return Counter(outcomes)
    finally:
        for channel in channels:
            await channel.close()


def test_a_burst_of_follow_streams_is_served_in_full(coordinator: Coordinator) -> None:
    outcomes = asyncio.run(_burst(coordinator.address))
    assert outcomes == Counter({"event": STREAMS}), outcomes
