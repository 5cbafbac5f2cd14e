"""The async client's Session stream: its hot-path calls as messages of one BatchedSession
stream, on the event loop (as `durable._stream` does with threads).

A calling task queues its request (tagged with a fresh request_id) and awaits a future; a
writer task sends everything queued by then as one message; a reader task resolves the
future of each response's request_id. When the stream breaks, every call waiting on it
fails with UNAVAILABLE, which the client's RetryPolicy retries on a new stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from durable._core import batching
from durable._failures import CallFailed
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc


class AsyncSessionStream:
    """One open BatchedSession stream on the running loop. Once broken it stays broken."""

    def __init__(self, stub: pb_grpc.CoordinatorServiceAsyncStub) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.SessionResponse]] = {}
        self._broken: CallFailed | None = None
        self._outgoing: collections.deque[pb.SessionRequest] = collections.deque()
        self._wake = asyncio.Event()
        # No request iterator: the writer task writes each message itself.
        self._call: Any = stub.BatchedSession()
        self._writer = asyncio.create_task(self._write(), name="durable-session-writer")
        self._reader = asyncio.create_task(self._read(), name="durable-session-reader")

    @property
    def broken(self) -> bool:
        return self._broken is not None

    async def call(self, field: str, request: Message, timeout: float) -> Message:
        """Send `request` as the SessionRequest `field` and wait up to `timeout` seconds
        for its response; raises CallFailed (the call's error, or UNAVAILABLE when the
        stream broke, or DEADLINE_EXCEEDED)."""
        if self._broken is not None:
            raise self._broken
        request_id = next(self._ids)
        answered: asyncio.Future[pb.SessionResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answered
        self._outgoing.append(batching.wrap(field, request, request_id))
        self._wake.set()
        try:
            response = await asyncio.wait_for(answered, timeout)
        except asyncio.TimeoutError:
            # Never answered: forget it (a late response is dropped by the reader).
            raise CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        finally:
            self._pending.pop(request_id, None)
        return batching.answer(response, field)

    async def close(self) -> None:
        """Cancel the stream; calls still waiting fail with CANCELLED."""
        self._break(CallFailed(grpc.StatusCode.CANCELLED, "client closed"))
        self._call.cancel()
        for task in (self._writer, self._reader):
            task.cancel()
        await asyncio.gather(self._writer, self._reader, return_exceptions=True)

    async def _write(self) -> None:
        """Send what is queued, everything queued meanwhile in one message."""
        try:
            while self._broken is None:
                if not self._outgoing:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = batching.Batch(self._outgoing.popleft())
                while self._outgoing and batch.add(self._outgoing[0]):
                    self._outgoing.popleft()
                await self._call.write(batch.message)
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            # The call ended under us: the reader says why.
            return

    async def _read(self) -> None:
        error: grpc.RpcError | None = None
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    break
                for response in message.results:
                    answered = self._pending.pop(response.request_id, None)
                    if answered is not None and not answered.done():
                        answered.set_result(response)
        except grpc.RpcError as failed:
            error = failed
        except asyncio.CancelledError:
            if self._broken is None:  # not by close(): cancelled by the coordinator's end
                self._break(batching.stream_failure(None))
            raise
        self._break(batching.stream_failure(error))
        self._wake.set()

    def _break(self, failure: CallFailed) -> None:
        """Fail every waiting call with `failure` (and every later one), stop sending."""
        if self._broken is not None:
            return
        self._broken = failure
        pending = list(self._pending.values())
        self._pending.clear()
        self._outgoing.clear()
        self._wake.set()
        for answered in pending:
            if not answered.done():
                answered.set_exception(failure)
        with contextlib.suppress(Exception):
            self._call.cancel()
