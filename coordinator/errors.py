"""Domain errors, and their one mapping to gRPC status codes with an ErrorInfo reason.

The store and the validation layer raise these; only the servicer edge turns them into a
status. Reasons are stable strings clients may branch on (docs/wire-contract.md).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "durable.v1"


class CoordinatorError(Exception):
    """A request that cannot be served as asked; maps to one status code and reason."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status this error is sent as."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])


class InvalidArgument(CoordinatorError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)


class WorkflowNotFound(CoordinatorError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "WORKFLOW_NOT_FOUND"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} does not exist", workflow_id=workflow_id)


class WorkflowNameMismatch(CoordinatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "WORKFLOW_NAME_MISMATCH"

    def __init__(self, workflow_id: str, recorded: str, requested: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} was started as {recorded!r}, not {requested!r}",
            workflow_id=workflow_id,
            recorded_name=recorded,
            requested_name=requested,
        )


class StepNameMismatch(CoordinatorError):
    """A replay reached a recorded step under another name: the workflow is not deterministic."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "STEP_NAME_MISMATCH"

    def __init__(self, workflow_id: str, step_id: int, recorded: str, requested: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} step {step_id} was recorded as {recorded}, "
            f"but the replay asked for {requested}: the workflow is not deterministic",
            workflow_id=workflow_id,
            step_id=str(step_id),
            recorded_name=recorded,
            requested_name=requested,
        )


class WorkflowNotPending(CoordinatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "WORKFLOW_NOT_PENDING"

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is {status}; no new step can be recorded",
            workflow_id=workflow_id,
            status=status,
        )


class DatabaseUnavailable(CoordinatorError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "DATABASE_UNAVAILABLE"

    def __init__(self, why: str = "") -> None:
        # `why` says what failed (a standby, a lost connection, no primary yet...), for people.
        detail = f" ({why})" if why else ""
        super().__init__(f"the database cannot be reached; retry{detail}")


class ShuttingDown(CoordinatorError):
    """The coordinator is stopping: a wait it was serving ends so the client can go elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("coordinator shutting down; retry")


class NotOwner(CoordinatorError):
    """A worker wrote to a workflow that another executor has taken over: it must stop."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NOT_OWNER"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is now run by another executor; stop running it",
            workflow_id=workflow_id,
        )


class LeaseExpired(CoordinatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "LEASE_EXPIRED"

    def __init__(self, executor_id: str) -> None:
        super().__init__(
            f"executor {executor_id!r} holds no live lease; send a Heartbeat first",
            executor_id=executor_id,
        )


class WorkflowFinished(CoordinatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "WORKFLOW_FINISHED"

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} finished with {status}; fork it to run it again",
            workflow_id=workflow_id,
            status=status,
        )


class QueueDeduplicated(CoordinatorError):
    """A queue already holds a live (ENQUEUED or PENDING) workflow with this deduplication ID."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "QUEUE_DEDUPLICATED"

    def __init__(self, queue_name: str, deduplication_id: str, existing_workflow_id: str) -> None:
        super().__init__(
            f"queue {queue_name!r} already holds workflow {existing_workflow_id!r} with"
            f" deduplication ID {deduplication_id!r}",
            queue_name=queue_name,
            deduplication_id=deduplication_id,
            existing_workflow_id=existing_workflow_id,
        )


class Unimplemented(CoordinatorError):
    """An RPC of the contract this coordinator does not serve (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"

    def __init__(self, rpc: str) -> None:
        super().__init__(f"{rpc} is not implemented by this coordinator")


class WorkflowNotFinished(CoordinatorError):
    """DeleteWorkflow of a workflow (or, with include_children, a child) still running."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "WORKFLOW_NOT_FINISHED"

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is {status}: only finished workflows can be deleted "
            "(cancel it first); nothing was deleted",
            workflow_id=workflow_id,
            status=status,
        )


class CursorExpired(CoordinatorError):
    """WatchWorkflows after a cursor whose change is no longer kept (its workflow was
    deleted by retention or DeleteWorkflow): the client restarts from now."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CURSOR_EXPIRED"

    def __init__(self, cursor: str) -> None:
        super().__init__(
            f"cursor {cursor!r} points at a change that is no longer kept (its workflow was "
            "deleted); changes may have been missed: watch again from now (no after_cursor)",
            cursor=cursor,
        )
