"""Session streams: many workflows' hot-path calls over one bidirectional stream.

Two RPCs share this code: Session carries one call per message each way; BatchedSession
carries many, both ways: the calls a client has ready go in one message, and the responses
ready at one moment come back in one message, which under load saves most of the
per-message cost on both sides.

A unary gRPC call costs the coordinator (and the client) far more than a message on a
stream that is already open (bench/README.md, "Where the time goes"), so a client sends its
StartWorkflow / RunStep / SetEvent / FinishWorkflow / RecordStepAttempt calls as messages
of one Session stream. Each message runs concurrently, through the very function the unary
RPC runs (same validation, same store call, same errors), and its response goes back
tagged with the client's request_id as soon as it is ready: responses come in any order.

- A call's failure is its response's CallError, built by the edge's mapping
  (`edge.domain_error`): it never ends the stream.
- At most MAX_IN_FLIGHT calls run per stream; beyond that the stream is not read until
  one finishes, so gRPC's flow control holds the client back (backpressure).
- A request_id reused while in flight ends the stream with INVALID_ARGUMENT: the client
  could no longer tell the two responses apart.
- On shutdown (the hub closes) the stream stops reading, answers the calls in flight and
  ends with UNAVAILABLE (SHUTTING_DOWN); the client retries what got no response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from google.protobuf.message import Message

from coordinator import metrics
from coordinator.edge import domain_error, workflow_id_of
from coordinator.errors import CoordinatorError, InvalidArgument, ShuttingDown
from coordinator.notify import Hub
from durable.v1 import coordinator_pb2 as pb

# Calls running at once per stream. Enough for a client running hundreds of workflows
# concurrently; a bound, so that one stream cannot queue unbounded work in the coordinator.
MAX_IN_FLIGHT = 1024
# A BatchedSession message, either way, grows to at most this many bytes unless one call
# alone is larger: the coordinator's responses stop there, and it accepts requests this
# large whatever its payload limit (server.py), so a client batching up to here is safe.
MAX_BATCH_BYTES = 1 << 20


class HotPath(Protocol):
    """The unary handlers' bodies, by the caller's namespace (coordinator/service.py)."""

    async def start_workflow(
        self, ns: str, request: pb.StartWorkflowRequest
    ) -> pb.StartWorkflowResponse: ...
    async def run_step(self, ns: str, request: pb.RunStepRequest) -> pb.RunStepResponse: ...
    async def set_event(self, ns: str, request: pb.SetEventRequest) -> pb.SetEventResponse: ...
    async def finish_workflow(
        self, ns: str, request: pb.FinishWorkflowRequest
    ) -> pb.FinishWorkflowResponse: ...
    async def record_step_attempt(
        self, ns: str, request: pb.RecordStepAttemptRequest
    ) -> pb.RecordStepAttemptResponse: ...


Handler = Callable[[str, Any], Awaitable[Message]]


def _handlers(calls: HotPath) -> dict[str, tuple[str, Handler]]:
    """SessionRequest's `call` field -> (the unary RPC's name, for metrics and logs; body).
    The SessionResponse `result` field has the same name as the request's `call` field."""
    return {
        "run_step": ("RunStep", calls.run_step),
        "set_event": ("SetEvent", calls.set_event),
        "start_workflow": ("StartWorkflow", calls.start_workflow),
        "finish_workflow": ("FinishWorkflow", calls.finish_workflow),
        "record_step_attempt": ("RecordStepAttempt", calls.record_step_attempt),
    }


def call_error(error: CoordinatorError) -> pb.CallError:
    """The CallError a failed call answers with: what the edge would send as its status."""
    return pb.CallError(
        code=error.code.value[0],
        message=error.message,
        reason=error.reason,
        metadata=error.metadata,
    )


class _InputEnded:
    """Queued by the reader when it stops reading: the client half-closed, or shutdown."""

    def __init__(self, shutting_down: bool) -> None:
        self.shutting_down = shutting_down


async def serve(
    calls: HotPath,
    ns: str,
    batches: AsyncIterator[Sequence[pb.SessionRequest]],
    hub: Hub,
) -> AsyncIterator[list[pb.SessionResponse]]:
    """The responses of one stream, in batches: each batch is what was ready at once.

    `batches` are the calls as they arrive (one per Session message, many per
    BatchedSession message). Three parties feed one queue, which this generator (the
    stream's only writer) drains: the reader task (requests -> call tasks), the call tasks
    (their responses) and the shutdown watcher. Raises a CoordinatorError to end the stream
    with that status.
    """
    handlers = _handlers(calls)
    queue: asyncio.Queue[pb.SessionResponse | _InputEnded | Exception] = asyncio.Queue()
    in_flight: dict[int, asyncio.Task[None]] = {}
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def answer(request_id: int, field: str, inner: Message) -> None:
        method, handler = handlers[field]
        started = time.perf_counter()
        try:
            result = await handler(ns, inner)
            response = pb.SessionResponse(request_id=request_id)
            getattr(response, field).CopyFrom(result)
            code = "OK"
        except Exception as exc:
            error = domain_error(exc, method, workflow_id_of(inner))
            response = pb.SessionResponse(request_id=request_id, error=call_error(error))
            code = error.code.name
        metrics.rpc_finished(method, code, time.perf_counter() - started)
        queue.put_nowait(response)

    async def read() -> None:
        try:
            async for batch in batches:
                for request in batch:
                    # A slot per call: past MAX_IN_FLIGHT this waits, the stream is not
                    # read meanwhile, and gRPC's flow control holds the client's sends.
                    await slots.acquire()
                    request_id = request.request_id
                    if request_id in in_flight:
                        raise InvalidArgument("request_id", f"{request_id} is already in flight")
                    field = request.WhichOneof("call")
                    if field is None:
                        error = InvalidArgument("call", "required")
                        queue.put_nowait(
                            pb.SessionResponse(request_id=request_id, error=call_error(error))
                        )
                        continue  # its slot is released when the writer takes the response
                    in_flight[request_id] = asyncio.create_task(
                        answer(request_id, field, getattr(request, field))
                    )
        except Exception as exc:  # the stream's end: tell the writer
            queue.put_nowait(exc)
            return
        queue.put_nowait(_InputEnded(shutting_down=False))

    async def watch_shutdown() -> None:
        await hub.wait_closed()
        reader.cancel()
        queue.put_nowait(_InputEnded(shutting_down=True))

    reader = asyncio.create_task(read())
    watcher = asyncio.create_task(watch_shutdown())
    reading = True
    shutting_down = False
    ready: list[pb.SessionResponse] = []
    ready_bytes = 0
    try:
        while reading or in_flight or ready:
            # Wait only when nothing is ready; then take everything queued meanwhile.
            if ready and queue.empty():
                yield ready
                ready, ready_bytes = [], 0
                continue
            item = await queue.get()
            if isinstance(item, pb.SessionResponse):
                in_flight.pop(item.request_id, None)
                slots.release()
                size = item.ByteSize()
                if ready and ready_bytes + size > MAX_BATCH_BYTES:
                    yield ready
                    ready, ready_bytes = [], 0
                ready.append(item)
                ready_bytes += size
            elif isinstance(item, _InputEnded):
                reading = False
                shutting_down = shutting_down or item.shutting_down
            else:
                if ready:
                    yield ready
                raise item
        if shutting_down:
            raise ShuttingDown()
    finally:
        reader.cancel()
        watcher.cancel()
        # The client went away (or the stream failed): nobody waits for these answers.
        for task in in_flight.values():
            task.cancel()


async def one_per_message(
    requests: AsyncIterator[pb.SessionRequest],
) -> AsyncIterator[Sequence[pb.SessionRequest]]:
    """A Session stream's messages as batches of one call."""
    async for request in requests:
        yield (request,)


async def calls_of(
    messages: AsyncIterator[pb.BatchedSessionRequest],
) -> AsyncIterator[Sequence[pb.SessionRequest]]:
    """A BatchedSession stream's messages as their batches of calls."""
    async for message in messages:
        yield message.calls
