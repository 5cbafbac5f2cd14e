"""The coordinator connection: one gRPC channel per process, every call with a deadline,
and gRPC errors turned into the SDK's typed exceptions."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from durable._connection import TLS, open_channel
from durable.errors import CoordinatorError, CoordinatorUnavailableError
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# Every unary call gets this deadline unless it waits on purpose.
CALL_TIMEOUT_SECONDS = 30.0
# Extra transport deadline on calls that wait server-side, beyond the wait itself.
WAIT_MARGIN_SECONDS = 10.0

T = TypeVar("T")


def _typed_error(error: grpc.RpcError) -> CoordinatorError:
    call: grpc.Call = error  # type: ignore[assignment]
    code = call.code()
    message = call.details() or str(code)
    status = rpc_status.from_call(call)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            cls = CoordinatorError.for_reason(info.reason)
            return cls(message, code, dict(info.metadata))
    if code == grpc.StatusCode.UNAVAILABLE:
        return CoordinatorUnavailableError(message, code)
    return CoordinatorError(message, code)


def _call(method: Callable[..., T], request: object, timeout: float = CALL_TIMEOUT_SECONDS) -> T:
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as error:
        raise _typed_error(error) from None


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class Client:
    """A connection to a coordinator. Thread-safe; one per process is plenty."""

    def __init__(
        self, target: str | None = None, *, token: str | None = None, tls: TLS | None = None
    ) -> None:
        """Connect to `target` (default: $DURABLE_COORDINATOR or 127.0.0.1:50051), with an
        optional bearer token (default: $DURABLE_TOKEN) and TLS (default: from
        $DURABLE_TLS_CA and friends, see `TLS.from_env`)."""
        self.target = target or os.environ.get("DURABLE_COORDINATOR", DEFAULT_TARGET)
        token = token or os.environ.get("DURABLE_TOKEN") or None
        self._channel = open_channel(self.target, token, tls or TLS.from_env())
        self._stub = pb_grpc.CoordinatorServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def start_workflow(
        self, workflow_id: str, name: str, input: pb.Payload
    ) -> pb.StartWorkflowResponse:
        request = pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, input=input)
        return _call(self._stub.StartWorkflow, request)

    def history(self, started: pb.StartWorkflowResponse) -> list[pb.Step]:
        """The full step history of a started workflow, paging past a truncated one."""
        steps = list(started.history)
        more = started.history_truncated
        while more:
            after = steps[-1].step_id if steps else 0
            request = pb.ListStepsRequest(
                workflow_id=started.workflow.workflow_id, after_step_id=after, page_size=1000
            )
            page = _call(self._stub.ListSteps, request)
            steps.extend(page.steps)
            more = page.has_more
        return steps

    def run_step(self, request: pb.RunStepRequest) -> pb.RunStepResponse:
        return _call(self._stub.RunStep, request)

    def set_event(self, request: pb.SetEventRequest) -> pb.SetEventResponse:
        return _call(self._stub.SetEvent, request)

    def finish_workflow(self, request: pb.FinishWorkflowRequest) -> pb.FinishWorkflowResponse:
        return _call(self._stub.FinishWorkflow, request)

    def get_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        reply = _call(self._stub.GetWorkflow, request)
        return reply.workflow

    def await_workflow(self, workflow_id: str, timeout: float) -> pb.AwaitWorkflowResponse:
        request = pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(timeout))
        return _call(self._stub.AwaitWorkflow, request, timeout + WAIT_MARGIN_SECONDS)

    def get_event(
        self, workflow_id: str, key: str, timeout: float, *, follow: bool
    ) -> Iterator[pb.GetEventResponse]:
        """The GetEvent stream's messages; cancelled if the caller stops iterating early."""
        request = pb.GetEventRequest(
            workflow_id=workflow_id, key=key, timeout=duration(timeout), follow=follow
        )
        stream = self._stub.GetEvent(request, timeout=timeout + WAIT_MARGIN_SECONDS)
        try:
            yield from stream
        except grpc.RpcError as error:
            raise _typed_error(error) from None
        finally:
            stream.cancel()


_default: Client | None = None
_default_lock = threading.Lock()


def configure(
    target: str | None = None, *, token: str | None = None, tls: TLS | None = None
) -> Client:
    """Point the SDK at a coordinator; arguments as for `Client`."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Client(target, token=token, tls=tls)
        return _default


def default_client() -> Client:
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
