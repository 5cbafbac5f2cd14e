"""A failed coordinator call, whichever way it travelled (a unary RPC's status or a Session
stream's CallError), and its one mapping to the SDK's typed exceptions."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from durable.errors import (
    CoordinatorError,
    CoordinatorUnavailableError,
    WorkflowCancelledError,
    WorkflowNotPendingError,
)
from durable.v1 import coordinator_pb2 as pb

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CallFailed(Exception):
    """One attempt of a call failed with `code`; `reason` and `metadata` are the ErrorInfo's
    (empty when the status carried none, e.g. a transport failure)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> CallFailed:
        call: grpc.Call = error  # type: ignore[assignment]
        code = call.code()
        message = call.details() or str(code)
        status = rpc_status.from_call(call)
        for detail in status.details if status is not None else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return cls(code, message, info.reason, dict(info.metadata))
        return cls(code, message)

    @classmethod
    def from_call_error(cls, error: pb.CallError) -> CallFailed:
        code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
        return cls(code, error.message or str(code), error.reason, dict(error.metadata))

    def typed(self) -> CoordinatorError:
        """The SDK exception this failure is raised as."""
        if not self.reason:
            if self.code == grpc.StatusCode.UNAVAILABLE:
                return CoordinatorUnavailableError(self.message, self.code)
            return CoordinatorError(self.message, self.code)
        cls = CoordinatorError.for_reason(self.reason)
        if cls is WorkflowNotPendingError and self.metadata.get("status") == "CANCELLED":
            cls = WorkflowCancelledError
        if cls is CoordinatorError and self.code == grpc.StatusCode.UNAVAILABLE:
            cls = CoordinatorUnavailableError  # e.g. SHUTTING_DOWN: retry elsewhere
        return cls(self.message, self.code, dict(self.metadata))
