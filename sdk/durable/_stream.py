"""The session stream: a Client's hot-path calls (StartWorkflow, RunStep, SetEvent,
FinishWorkflow, RecordStepAttempt) as messages of one bidirectional gRPC stream
(BatchedSession).

A unary call costs both sides several times what a message on an open stream does, and a
message carrying many calls little more than one carrying one (bench/README.md), so every
thread of the process sends its calls through one stream: the calling thread queues its
request (tagged with a fresh request_id) and waits on its own slot; gRPC's request thread
sends everything queued by then as one message; a reader thread hands each response to the
slot of its request_id. Responses come in any order, several to a message.

When the stream breaks (the coordinator stops or the connection drops) every call waiting
on it fails with UNAVAILABLE; the Client's RetryPolicy retries them, and the first retry
opens a new stream. Every call carried here is idempotent (first writer wins), so a call
whose response was lost is safe to send again.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator

import grpc
from google.protobuf.message import Message

from durable._core import batching
from durable._failures import CallFailed
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc


class _Slot:
    """Where one call's response (or failure) lands; the caller waits on it."""

    __slots__ = ("_ready", "failure", "response")

    def __init__(self) -> None:
        # A lock taken now and released by whoever answers: the cheapest one-shot wake-up.
        self._ready = threading.Lock()
        self._ready.acquire()
        self.response: pb.SessionResponse | None = None
        self.failure: CallFailed | None = None

    def set(self, response: pb.SessionResponse | None, failure: CallFailed | None) -> None:
        self.response = response
        self.failure = failure
        self._ready.release()

    def wait(self, timeout: float) -> bool:
        return self._ready.acquire(timeout=max(0.0, timeout))


class SessionStream:
    """One open BatchedSession stream. Once broken it stays broken; the Client opens another."""

    def __init__(self, stub: pb_grpc.CoordinatorServiceStub) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Slot] = {}
        self._broken: CallFailed | None = None
        # None (once) ends the request iterator: gRPC's sending thread then returns.
        self._outgoing: queue.SimpleQueue[pb.SessionRequest | None] = queue.SimpleQueue()
        self._responses = stub.BatchedSession(self._batches())
        self._reader = threading.Thread(
            target=self._read, name="durable-session-reader", daemon=True
        )
        self._reader.start()

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def call(self, field: str, request: Message, timeout: float) -> Message:
        """Send `request` as the SessionRequest `field` and wait up to `timeout` seconds
        for its response; raises CallFailed (the call's error, or UNAVAILABLE when the
        stream broke, or DEADLINE_EXCEEDED)."""
        slot = _Slot()
        with self._lock:
            if self._broken is not None:
                raise self._broken
            request_id = next(self._ids)
            self._pending[request_id] = slot
        self._outgoing.put(batching.wrap(field, request, request_id))
        if not slot.wait(timeout):
            with self._lock:
                mine = self._pending.pop(request_id, None)
            if mine is not None:
                # Never answered: forget it (a late response is dropped by the reader).
                raise CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            slot.wait(timeout=60.0)  # answered just now: set() has released or will at once
        if slot.failure is not None:
            raise slot.failure
        assert slot.response is not None
        return batching.answer(slot.response, field)

    def close(self) -> None:
        """Cancel the stream; calls still waiting fail with CANCELLED."""
        self._break(CallFailed(grpc.StatusCode.CANCELLED, "client closed"))
        self._responses.cancel()

    def _batches(self) -> Iterator[pb.BatchedSessionRequest]:
        """What gRPC sends: waits for a request, then takes every one queued meanwhile
        (while the last message was being sent) into the same message."""
        carried: pb.SessionRequest | None = None
        while True:
            request = carried if carried is not None else self._outgoing.get()
            carried = None
            if request is None:
                return
            batch = batching.Batch(request)
            ended = False
            while True:
                try:
                    request = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    ended = True
                    break
                if not batch.add(request):
                    carried = request  # would overflow this message: first of the next
                    break
            yield batch.message
            if ended:
                return

    def _read(self) -> None:
        error: grpc.RpcError | None = None
        try:
            for message in self._responses:
                for response in message.results:
                    with self._lock:
                        slot = self._pending.pop(response.request_id, None)
                    if slot is not None:
                        slot.set(response, None)
        except grpc.RpcError as failed:
            error = failed
        self._break(batching.stream_failure(error))

    def _break(self, failure: CallFailed) -> None:
        """Fail every waiting call with `failure` (and every later one), stop sending."""
        with self._lock:
            if self._broken is not None:
                return
            self._broken = failure
            pending = list(self._pending.values())
            self._pending.clear()
        self._outgoing.put(None)
        for slot in pending:
            slot.set(None, failure)
