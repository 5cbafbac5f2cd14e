"""The Session stream's rules, transport aside: how calls are wrapped and packed into
BatchedSession messages, and what a response means for the call that waits on it. The
sync stream (a reader thread) and the async one (a reader task) both follow these."""

from __future__ import annotations

import grpc
from google.protobuf.message import Message

from durable._failures import CallFailed
from durable.v1 import coordinator_pb2 as pb

# A message stops growing past this many bytes (a larger request goes alone), well inside
# gRPC's message size limit.
MAX_BATCH_BYTES = 1 << 20


def wrap(field: str, request: Message, request_id: int) -> pb.SessionRequest:
    """`request` as the SessionRequest `field`, tagged with its `request_id`."""
    wrapped = pb.SessionRequest(request_id=request_id)
    getattr(wrapped, field).CopyFrom(request)
    return wrapped


class Batch:
    """One BatchedSessionRequest being filled: calls queued while the last was sent."""

    def __init__(self, first: pb.SessionRequest) -> None:
        self.message = pb.BatchedSessionRequest(calls=[first])
        self._size = first.ByteSize()

    def add(self, request: pb.SessionRequest) -> bool:
        """Take `request` in; False (leaving it out) once the message is full or would
        overflow: the caller sends this one and starts the next with it."""
        size = self._size + request.ByteSize()
        if self._size >= MAX_BATCH_BYTES or size > MAX_BATCH_BYTES:
            return False
        self.message.calls.append(request)
        self._size = size
        return True


def answer(response: pb.SessionResponse, field: str) -> Message:
    """The response to a call sent as `field`; raises its CallFailed when it failed."""
    result = response.WhichOneof("result")
    if result == "error":
        raise CallFailed.from_call_error(response.error)
    if result != field:
        raise CallFailed(
            grpc.StatusCode.INTERNAL, f"session response carries {result}, not {field}"
        )
    reply: Message = getattr(response, field)
    return reply


# What a broken stream's status is reported as, though the stream only lost its transport:
# to be retried (every call on the stream is idempotent) rather than given to the caller.
_TRANSPORT_LOST = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL})


def stream_failure(error: grpc.RpcError | None) -> CallFailed:
    """Why a stream broke, as every call waiting on it fails: ended by the coordinator
    (`error` None) or failed.

    Two statuses of the stream itself mean its transport went away, and become
    UNAVAILABLE, retried on a new stream: CANCELLED that we did not ask for (close()
    breaks the stream before cancelling, so ours is never seen), the coordinator cutting
    the stream off at the end of its shutdown grace; and INTERNAL, which is how grpc.aio
    reports a write that met a stream whose server had just died ("Internal error from
    Core", grpc/grpc#36066): the coordinator's own errors come per call, as CallErrors in
    the responses, never as the stream's status.
    """
    if error is None:
        # The coordinator only ends a stream we did not half-close by failing it.
        return CallFailed(grpc.StatusCode.UNAVAILABLE, "session stream ended")
    failure = CallFailed.from_rpc_error(error)
    if failure.code in _TRANSPORT_LOST:
        return CallFailed(grpc.StatusCode.UNAVAILABLE, failure.message)
    return failure
