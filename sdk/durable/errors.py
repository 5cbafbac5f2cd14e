"""Exceptions the SDK raises. Catch DurableError for all of them.

Coordinator errors carry a stable reason (google.rpc.ErrorInfo); each reason maps to one
class here, registered by its `reason` attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import grpc

if TYPE_CHECKING:
    from durable._payloads import RawPayload


class DurableError(Exception):
    """Base class of every error the SDK raises."""


class CoordinatorError(DurableError):
    """The coordinator refused a call. `reason` is its stable ErrorInfo reason."""

    reason: ClassVar[str] = ""
    _by_reason: ClassVar[dict[str, type[CoordinatorError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class naming a reason itself registers: a subclass such as
        # WorkflowCancelledError is chosen from the error's metadata instead.
        if "reason" in vars(cls) and cls.reason:
            CoordinatorError._by_reason[cls.reason] = cls

    def __init__(
        self, message: str, code: grpc.StatusCode, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.metadata = metadata or {}

    @classmethod
    def for_reason(cls, reason: str) -> type[CoordinatorError]:
        return cls._by_reason.get(reason, CoordinatorError)


class InvalidRequestError(CoordinatorError):
    """A request field was rejected; `metadata["field"]` names it."""

    reason = "INVALID_ARGUMENT"


class WorkflowNotFoundError(CoordinatorError):
    reason = "WORKFLOW_NOT_FOUND"


class WorkflowConflictError(CoordinatorError):
    """A workflow ID was started again under a different workflow name."""

    reason = "WORKFLOW_NAME_MISMATCH"


class NonDeterminismError(CoordinatorError):
    """A replay reached a recorded step under another name: the workflow code changed."""

    reason = "STEP_NAME_MISMATCH"


class WorkflowNotPendingError(CoordinatorError):
    """The workflow already finished (perhaps run elsewhere); no new step is recorded."""

    reason = "WORKFLOW_NOT_PENDING"


class WorkflowCancelledError(WorkflowNotPendingError):
    """The workflow was cancelled (by cancel_workflow or its timeout): its run stops at the
    next step. resume_workflow continues it."""


class WorkflowOwnershipLostError(CoordinatorError):
    """Another worker has taken the workflow over (this one's lease lapsed, or it was
    restarted): this run must stop; the other worker finishes it."""

    reason = "NOT_OWNER"


class WorkflowDeadLetterError(DurableError):
    """The workflow's workers died more often than the coordinator's recovery limit allows:
    it is no longer recovered automatically. resume_workflow continues it."""

    def __init__(self, workflow_id: str, recovery_attempts: int) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is in dead letter after {recovery_attempts} recoveries;"
            " resume it to run it again"
        )
        self.workflow_id = workflow_id
        self.recovery_attempts = recovery_attempts


class CoordinatorUnavailableError(CoordinatorError):
    """The coordinator or its database cannot be reached; the call is safe to retry."""

    reason = "DATABASE_UNAVAILABLE"


class UnauthenticatedError(CoordinatorError):
    """The coordinator requires a bearer token and got none, or one it does not know."""

    reason = "UNAUTHENTICATED"


class NotInWorkflowError(DurableError):
    """An operation that only a running workflow may do was called outside one."""


class PayloadError(DurableError):
    """A value cannot be encoded as JSON, or a payload cannot be decoded."""


class PayloadCodecError(PayloadError):
    """A payload codec failed, or a payload's encoding names a codec chain this process
    cannot undo: a codec it has not configured, or one that refused the bytes (a wrong
    key). `raw` is the payload as stored, a `durable.RawPayload` (its encoding and bytes;
    None when encoding failed). A workflow run that meets it stops without recording it
    as the workflow's outcome: the workflow waits for a process with the right codecs."""

    def __init__(self, message: str, raw: RawPayload | None) -> None:
        super().__init__(message)
        self.raw = raw


class RecordedError(DurableError):
    """A recorded step or workflow error whose original exception type is not available.

    On replay, a recorded error is raised again as its original type when that type is an
    exception class already imported in this process; otherwise as this.
    """

    def __init__(self, type: str, message: str, details: str = "") -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.details = details


class QueueDeduplicatedError(CoordinatorError):
    """The queue already holds an ENQUEUED or PENDING workflow with this deduplication ID;
    `existing_workflow_id` names it. The ID is free again once that workflow finishes."""

    reason = "QUEUE_DEDUPLICATED"

    @property
    def existing_workflow_id(self) -> str:
        return self.metadata.get("existing_workflow_id", "")


class StepTimeoutError(DurableError, TimeoutError):
    """A step's attempt ran longer than the step's `timeout` and was abandoned.

    Recorded as the attempt's error (and, once the retries run out, as the step's) under
    the stable type name `durable.StepTimeoutError`, whatever module defines the class: a
    replay raises it again, and a client in another language matches that name. Both a
    DurableError and a TimeoutError, so `except TimeoutError` catches it as well as
    `except durable.DurableError`, and `StepRetry(retry_on=(TimeoutError,))` retries it.
    """

    # The name recorded in Failure.type: `durable.StepTimeoutError` (see the wire contract).
    __module__ = "durable"


class WorkflowNotFinishedError(CoordinatorError):
    """delete_workflow of a workflow (or, with include_children, a descendant) that has not
    finished; `workflow_id` and `status` name it. Nothing was deleted."""

    reason = "WORKFLOW_NOT_FINISHED"

    @property
    def workflow_id(self) -> str:
        return self.metadata.get("workflow_id", "")

    @property
    def status(self) -> str:
        return self.metadata.get("status", "")
