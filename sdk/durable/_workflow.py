"""Workflows: the decorator, starting and resuming, timeouts, and handles to results."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

import grpc

from durable import _context, _payloads, _session
from durable._client import Client, default_client
from durable.errors import (
    CoordinatorError,
    DurableError,
    NonDeterminismError,
    PayloadError,
    WorkflowCancelledError,
    WorkflowDeadLetterError,
    WorkflowNotPendingError,
    WorkflowOwnershipLostError,
)
from durable.v1 import coordinator_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("durable.workflow")

# How long one AwaitWorkflow call waits before asking again, when the caller waits forever.
_AWAIT_CHUNK_SECONDS = 60.0
# The longest workflow timeout the coordinator accepts (a year).
_MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0

# A run in this process that ends with one of these did not settle the workflow: it was
# cancelled, another worker took it over, or another run finished it. Its outcome is the
# coordinator's to tell.
_STOPPED_HERE = (WorkflowOwnershipLostError, WorkflowNotPendingError)


class WorkflowStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    DEAD_LETTER = "DEAD_LETTER"
    ENQUEUED = "ENQUEUED"


def _status(value: pb.WorkflowStatus.ValueType) -> WorkflowStatus:
    return WorkflowStatus(pb.WorkflowStatus.Name(value).removeprefix("WORKFLOW_STATUS_"))


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    fn: Callable[..., Any]
    # Seconds after its start at which the coordinator cancels it; None: never.
    timeout: float | None = None


_next_workflow_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durable_next_workflow_id", default=None
)
# Unset (the decorator's default applies), or the timeout to start with (None: no timeout).
_UNSET = object()
_next_timeout: contextvars.ContextVar[object] = contextvars.ContextVar(
    "durable_next_workflow_timeout", default=_UNSET
)


@dataclass(frozen=True)
class EnqueueOptions:
    """How `Queue.enqueue` calls in a `set_enqueue_options` block enqueue (see _queues)."""

    priority: int = 0
    deduplication_id: str = ""


next_enqueue_options: contextvars.ContextVar[EnqueueOptions | None] = contextvars.ContextVar(
    "durable_next_enqueue_options", default=None
)


@dataclass(frozen=True)
class QueueStart:
    """Enqueue the workflow being started on this queue."""

    name: str
    priority: int = 0
    deduplication_id: str = ""


def _check_timeout(seconds: float | None) -> float | None:
    if seconds is not None and not 0 < seconds <= _MAX_TIMEOUT_SECONDS:
        raise ValueError(f"a workflow timeout must be 0 < seconds <= {_MAX_TIMEOUT_SECONDS:.0f}")
    return seconds


@contextlib.contextmanager
def set_workflow_id(workflow_id: str) -> Iterator[None]:
    """Start the workflows called or started inside this block under `workflow_id`."""
    token = _next_workflow_id.set(workflow_id)
    try:
        yield
    finally:
        _next_workflow_id.reset(token)


@contextlib.contextmanager
def set_workflow_timeout(seconds: float | None) -> Iterator[None]:
    """Start the workflows called or started inside this block with this timeout (None: no
    timeout), instead of their decorator's `timeout`.

    The coordinator cancels a workflow still unfinished `seconds` after it was first
    started; the run stops at its next step (WorkflowCancelledError). Applies only when
    the start creates the workflow: an existing one keeps its deadline.
    """
    token = _next_timeout.set(_check_timeout(seconds))
    try:
        yield
    finally:
        _next_timeout.reset(token)


def current_workflow_id() -> str | None:
    """The ID of the workflow running in this thread, or None outside workflows."""
    context = _context.current()
    return context.workflow_id if context else None


def _recorded_result(workflow: pb.Workflow) -> Any:
    """A finished workflow's output, or why there is none raised: its recorded error,
    WorkflowCancelledError, WorkflowDeadLetterError, or WorkflowNotPendingError for one
    that is not finished (it was resumed elsewhere)."""
    status = workflow.status
    if status == pb.WORKFLOW_STATUS_SUCCESS:
        return _payloads.decode(workflow.output)
    if status == pb.WORKFLOW_STATUS_ERROR:
        raise _payloads.exception(workflow.error)
    if status == pb.WORKFLOW_STATUS_DEAD_LETTER:
        raise WorkflowDeadLetterError(workflow.workflow_id, workflow.recovery_attempts)
    label = _status(status).value
    cls = (
        WorkflowCancelledError
        if status == pb.WORKFLOW_STATUS_CANCELLED
        else (WorkflowNotPendingError)
    )
    raise cls(
        f"workflow {workflow.workflow_id!r} is {label}",
        grpc.StatusCode.FAILED_PRECONDITION,
        {"workflow_id": workflow.workflow_id, "status": label},
    )


class WorkflowHandle(Generic[R]):
    """A started workflow: its ID, status and result, wherever it runs."""

    def __init__(self, workflow_id: str, client: Client, local: Future[Any] | None = None) -> None:
        self.workflow_id = workflow_id
        self._client = client
        self._local = local

    def status(self) -> WorkflowStatus:
        return _status(self._client.get_workflow(self.workflow_id).status)

    def result(self, timeout: float | None = None) -> R:
        """Wait for the workflow's output (or raise its error).

        Raises TimeoutError if it has not finished within `timeout` seconds (None: no limit),
        WorkflowCancelledError if it was cancelled, WorkflowDeadLetterError if its workers
        kept dying. A PENDING or ENQUEUED workflow is waited for, wherever it runs: if this
        process's run of it stopped (another worker took it over), the wait goes on for the
        outcome the other worker records.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._local is not None:
            try:
                value: R = self._local.result(timeout)
                return value
            except _STOPPED_HERE:
                pass
        while True:
            wait = _AWAIT_CHUNK_SECONDS if deadline is None else deadline - time.monotonic()
            reply = self._client.await_workflow(self.workflow_id, max(0.0, wait))
            if not reply.timed_out:
                output: R = _recorded_result(reply.workflow)
                return output
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {self.workflow_id!r} did not finish in {timeout}s")


def log_stopped(workflow_id: str, error: Exception) -> None:
    """Note a run in this process that stopped without settling its workflow."""
    log.info("workflow %s stopped running here (%s: %s)", workflow_id, type(error).__name__, error)


def retrieve_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowHandle[Any]:
    """A handle to an existing workflow (NOT_FOUND raises WorkflowNotFoundError)."""
    client = client or default_client()
    client.get_workflow(workflow_id)
    return WorkflowHandle(workflow_id, client)


def spec_of(fn: Callable[..., Any]) -> WorkflowSpec:
    spec = getattr(fn, "__durable_workflow__", None)
    if not isinstance(spec, WorkflowSpec):
        raise DurableError(f"{fn!r} is not a workflow: decorate it with @durable.workflow")
    return spec


def child_workflow_id(parent_id: str, step_id: int) -> str:
    """The ID of the child a workflow starts at `step_id` without `set_workflow_id`: the
    same on every replay. Kept within the 256 characters a workflow ID may have."""
    suffix = f"-{step_id}"
    if len(parent_id) + len(suffix) <= 256:
        return parent_id + suffix
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:16]
    return f"{parent_id[:200]}-{digest}{suffix}"


def _begin(
    client: Client,
    spec: WorkflowSpec,
    args: Any,
    kwargs: Any,
    queue: QueueStart | None = None,
) -> tuple[pb.StartWorkflowResponse, str]:
    """Start (or find) the workflow; returns it with the worker session it runs under.

    Inside a workflow this starts a child, checkpointed as the parent's next step: a replay
    gets the same child back. With `queue` the workflow is enqueued instead ('' session).
    """
    context = _context.current()
    input = _payloads.encode({"args": list(args), "kwargs": kwargs})
    chosen = _next_timeout.get()
    timeout = spec.timeout if chosen is _UNSET else chosen
    assert timeout is None or isinstance(timeout, float | int)
    queued: dict[str, Any] = {}
    if queue is not None:
        queued = {
            "queue_name": queue.name,
            "priority": queue.priority,
            "deduplication_id": queue.deduplication_id,
        }
    if context is None:
        # The ID is chosen here, not by the coordinator, so a retried start is idempotent.
        workflow_id = _next_workflow_id.get() or str(uuid.uuid4())
        # Under a worker started in this process, the workflow is that worker's: if the
        # process dies, another worker recovers it. A queued one is its queue's to run.
        executor_id = "" if queue else _session.executor_for(client)
        started = client.start_workflow(
            workflow_id, spec.name, input, executor_id=executor_id, timeout=timeout, **queued
        )
        return started, executor_id
    if context.in_step:
        raise DurableError(
            "a workflow cannot be started inside a step; start it from the workflow itself"
        )
    step_id, recorded = context.next_step(pb.STEP_KIND_START_WORKFLOW, spec.name)
    chosen_id = _next_workflow_id.get()
    if recorded is not None:
        workflow_id = _payloads.decode(recorded.output)
        if chosen_id and chosen_id != workflow_id:
            raise NonDeterminismError(
                f"workflow {context.workflow_id!r} step {step_id} started child"
                f" {workflow_id!r}, but the replay asked for {chosen_id!r}:"
                " the workflow is not deterministic",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            )
    else:
        workflow_id = chosen_id or child_workflow_id(context.workflow_id, step_id)
    # The child runs under the parent's session, so a worker recovering the parent's work
    # after a crash recovers the child's too.
    executor_id = "" if queue else context.executor_id
    started = client.start_workflow(
        workflow_id,
        spec.name,
        input,
        executor_id=executor_id,
        timeout=timeout,
        parent=pb.StepRef(
            workflow_id=context.workflow_id, step_id=step_id, executor_id=context.executor_id
        ),
        **queued,
    )
    return started, executor_id


def _client_here() -> Client:
    """Inside a workflow, its own client (a worker's); elsewhere the default client."""
    context = _context.current()
    return context.client if context is not None else default_client()


def _run_elsewhere(started: pb.StartWorkflowResponse, executor_id: str) -> bool:
    """Whether a started child is not this caller's to run: it is waiting for a worker,
    finished, or another live session runs it (e.g. a worker recovered it); then the
    caller awaits its result instead of running it."""
    workflow = started.workflow
    return workflow.status != pb.WORKFLOW_STATUS_PENDING or workflow.executor_id != executor_id


def execute(
    client: Client, spec: WorkflowSpec, started: pb.StartWorkflowResponse, executor_id: str = ""
) -> Any:
    """Run (or resume) a started workflow's body here, replaying its recorded steps.

    `executor_id`: the worker session running it; the coordinator fences its writes. Raises
    WorkflowCancelledError or WorkflowOwnershipLostError when the run has to stop.
    """
    workflow = started.workflow
    if workflow.status == pb.WORKFLOW_STATUS_PENDING:
        with _context.only_run_here(workflow.workflow_id) as waited:
            if waited:
                # Another run of it in this process just ended: go on from its records.
                started = client.start_workflow(
                    workflow.workflow_id, spec.name, workflow.input, executor_id=executor_id
                )
            if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
                return _run_body(client, spec, started, executor_id)
    workflow = started.workflow
    if workflow.status == pb.WORKFLOW_STATUS_ENQUEUED:
        # Waiting for a worker (it was resumed or forked): not this caller's to run.
        return WorkflowHandle(workflow.workflow_id, client).result()
    return _recorded_result(workflow)


def _run_body(
    client: Client, spec: WorkflowSpec, started: pb.StartWorkflowResponse, executor_id: str
) -> Any:
    workflow = started.workflow
    recorded_input = _payloads.decode(workflow.input)
    try:
        args, kwargs = recorded_input["args"], recorded_input["kwargs"]
    except (TypeError, KeyError):
        raise PayloadError(
            f"workflow {workflow.workflow_id!r} input is not {{'args': [...], 'kwargs': {{}}}}"
        ) from None
    context = _context.WorkflowContext(
        workflow.workflow_id,
        client,
        history={step.step_id: step for step in client.history(started)},
        executor_id=executor_id,
    )
    token = _context.enter(context)
    # Start options of an enclosing block (e.g. the caller's set_workflow_id, when a child
    # runs inline in its parent's thread) are for that block's own start, not this body's.
    reset = (
        _next_workflow_id.set(None),
        _next_timeout.set(_UNSET),
        next_enqueue_options.set(None),
    )
    try:
        value = spec.fn(*args, **kwargs)
        finish = pb.FinishWorkflowRequest(
            workflow_id=workflow.workflow_id, output=_payloads.encode(value)
        )
        raised: Exception | None = None
    except CoordinatorError:
        # Not the workflow's own outcome (the coordinator is unreachable, the code no longer
        # replays, the workflow was cancelled, or another worker runs it now): leave it for
        # whoever runs it next to settle.
        raise
    except Exception as exc:
        finish = pb.FinishWorkflowRequest(
            workflow_id=workflow.workflow_id, error=_payloads.failure(exc)
        )
        raised = exc
    finally:
        next_enqueue_options.reset(reset[2])
        _next_timeout.reset(reset[1])
        _next_workflow_id.reset(reset[0])
        _context.leave(token)
    finish.executor_id = executor_id
    reply = client.finish_workflow(finish)
    if reply.already_finished and executor_id and reply.workflow.executor_id != executor_id:
        raise _context.ownership_lost(workflow.workflow_id)
    if raised is not None and not reply.already_finished:
        raise raised
    return _recorded_result(reply.workflow)


def start_workflow(
    fn: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> WorkflowHandle[R]:
    """Start workflow `fn` in a background thread of this process and return its handle.

    The workflow ID comes from an enclosing `set_workflow_id` block, or is generated; the
    timeout from `set_workflow_timeout`, or the decorator. Starting an ID that exists
    returns that workflow, resuming it here if it is PENDING. While a `Worker` is started
    in this process (on the same client), the workflow runs under its session: if this
    process dies, another worker finishes it.
    """
    spec = spec_of(fn)
    client = _client_here()
    child = _context.current() is not None
    started, executor_id = _begin(client, spec, args, kwargs)
    workflow_id = started.workflow.workflow_id
    if started.workflow.status != pb.WORKFLOW_STATUS_PENDING or (
        child and _run_elsewhere(started, executor_id)
    ):
        return WorkflowHandle(workflow_id, client)  # finished, or run by a worker
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(execute(client, spec, started, executor_id))
        except _STOPPED_HERE as exc:
            log_stopped(workflow_id, exc)
            future.set_exception(exc)
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"workflow-{workflow_id}").start()
    return WorkflowHandle(workflow_id, client, future)


@overload
def workflow(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def workflow(
    *, name: str | None = None, timeout: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a durable workflow.

    Calling it runs it as a workflow in the calling thread (under the ID from
    `set_workflow_id`, or a new one) and returns its result; `start_workflow` runs it in
    the background. Its name defaults to "module.qualname"; pass `name=` to keep it stable
    when code moves, since a workflow is resumed under the name it was started with.
    `timeout`: seconds after its start at which the coordinator cancels it if unfinished
    (`set_workflow_timeout` overrides it per start).
    """
    _check_timeout(timeout)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        spec = WorkflowSpec(name or f"{fn.__module__}.{fn.__qualname__}", fn, timeout)

        @functools.wraps(fn)
        def run_here(*args: P.args, **kwargs: P.kwargs) -> R:
            client = _client_here()
            child = _context.current() is not None
            started, executor_id = _begin(client, spec, args, kwargs)
            if child and _run_elsewhere(started, executor_id):
                return WorkflowHandle[R](started.workflow.workflow_id, client).result()
            try:
                result: R = execute(client, spec, started, executor_id)
            except _STOPPED_HERE as exc:
                log_stopped(started.workflow.workflow_id, exc)
                result = WorkflowHandle[R](started.workflow.workflow_id, client).result()
            return result

        run_here.__durable_workflow__ = spec  # type: ignore[attr-defined]
        return run_here

    return decorate(fn) if fn is not None else decorate
