"""Calls to the coordinator, transport aside: deadlines, which failures are retried, and
what a failed call is raised as. Both clients (`durable.Client`, `durable.aio.AsyncClient`)
follow these rules; only how they wait differs."""

from __future__ import annotations

import os
import time
import uuid

import grpc

from durable._core.ops import duration
from durable._failures import CallFailed
from durable._retry import Backoff
from durable.v1 import coordinator_pb2 as pb

# Every unary call gets this deadline unless it waits on purpose.
CALL_TIMEOUT_SECONDS = 30.0
# Extra transport deadline on calls that wait server-side, beyond the wait itself.
WAIT_MARGIN_SECONDS = 10.0

# What is retried: writes (all idempotent) and waits when the coordinator is unavailable;
# plain reads also when their deadline passed.
RETRY_UNAVAILABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
RETRY_READ = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# $DURABLE_SESSION values that turn the Session stream off.
_SESSION_OFF = frozenset({"0", "false", "no", "off"})


def use_session(session: bool | None) -> bool:
    """Whether a client sends its hot-path calls over a Session stream: `session`, or by
    default unless $DURABLE_SESSION turns it off."""
    if session is not None:
        return session
    return os.environ.get("DURABLE_SESSION", "1").strip().lower() not in _SESSION_OFF


def retry_pause(
    error: grpc.RpcError | CallFailed, retry_on: frozenset[grpc.StatusCode], backoff: Backoff
) -> float:
    """The pause before retrying an attempt that failed with `error` (a grpc.RpcError or a
    CallFailed). Raises the SDK's typed error instead when its code is not in `retry_on`
    or the retry budget is spent."""
    failure = error if isinstance(error, CallFailed) else CallFailed.from_rpc_error(error)
    delay = backoff.next_delay() if failure.code in retry_on else None
    if delay is None:
        raise failure.typed() from None
    return delay


class Deadline:
    """A wait's end, fixed when the wait starts: every retry waits only for what is left."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())


# --- requests both clients build the same way ---------------------------------------------


def heartbeat_request(
    executor_id: str,
    worker_name: str,
    workflow_names: list[str],
    lease: float,
    queues: list[str] | None,
    app_version: str = "",
) -> pb.HeartbeatRequest:
    return pb.HeartbeatRequest(
        executor_id=executor_id,
        worker_name=worker_name,
        workflow_names=workflow_names,
        lease=duration(lease),
        queues=queues or [],
        app_version=app_version,
    )


def fork_request(
    workflow_id: str, start_step_id: int, new_workflow_id: str, app_version: str = ""
) -> pb.ForkWorkflowRequest:
    """The new ID is generated here when not given, so a retried call cannot fork twice.
    `app_version` moves the fork to that application version (empty: the original's)."""
    return pb.ForkWorkflowRequest(
        workflow_id=workflow_id,
        start_step_id=start_step_id,
        new_workflow_id=new_workflow_id or str(uuid.uuid4()),
        app_version=app_version,
    )


def recv_retry(request: pb.RecvRequest, left: float) -> pb.RecvRequest:
    """A Recv sent again for what is left of its wait (the coordinator keeps the deadline
    the first call recorded anyway)."""
    retry = pb.RecvRequest()
    retry.CopyFrom(request)
    retry.timeout.CopyFrom(duration(left))
    return retry


def get_event_request(
    workflow_id: str,
    key: str,
    left: float,
    *,
    follow: bool,
    after_version: int,
    caller: pb.StepRef | None,
    from_first: bool = False,
) -> pb.GetEventRequest:
    """A GetEvent (again, after a broken stream) for what is left of the wait; a follow
    resumes after the last version it yielded, so none is lost or repeated. A follow
    `from_first` starts at version 1 until it has yielded a value, then resumes as any."""
    return pb.GetEventRequest(
        workflow_id=workflow_id,
        key=key,
        timeout=duration(left),
        follow=follow,
        after_version=after_version,
        caller=caller,
        from_first_value=from_first and after_version == 0,
    )
