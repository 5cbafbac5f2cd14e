"""What the dashboard shows when the coordinator refuses or cannot be reached: an HTTP
status and one sentence for a person, never a stack trace."""

from __future__ import annotations

from dataclasses import dataclass

from durable.errors import (
    CoordinatorError,
    CoordinatorUnavailableError,
    DurableError,
    UnauthenticatedError,
    WorkflowNotFoundError,
)


@dataclass(frozen=True)
class Problem:
    status: int  # the HTTP status of a page that could not be shown
    kind: str  # "unavailable", "unauthenticated", "not_found", "refused", "error"
    message: str


def _said(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def problem(error: DurableError, target: str) -> Problem:
    """How `error`, raised by a call to the coordinator at `target`, is shown."""
    if isinstance(error, CoordinatorUnavailableError):
        return Problem(
            503,
            "unavailable",
            f"The coordinator at {target} is unavailable ({_said(error)}). "
            "This page reconnects when it is back.",
        )
    if isinstance(error, UnauthenticatedError):
        return Problem(
            401,
            "unauthenticated",
            f"The coordinator at {target} refused the dashboard: not authenticated "
            f"({_said(error)}). Start `durable ui` with --token (or DURABLE_TOKEN) set to a "
            "token of the namespace to show.",
        )
    if isinstance(error, WorkflowNotFoundError):
        return Problem(404, "not_found", _said(error))
    if isinstance(error, CoordinatorError):
        reason = f" {error.reason}" if error.reason else ""
        return Problem(
            409 if error.code.name == "FAILED_PRECONDITION" else 502,
            "refused",
            f"The coordinator refused ({error.code.name}{reason}): {_said(error)}",
        )
    return Problem(500, "error", _said(error))
