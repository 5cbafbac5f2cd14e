"""Workflows and steps: the decorators, starting and resuming, and handles to results."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from durable import _context, _payloads
from durable._client import Client, default_client
from durable.errors import CoordinatorError, DurableError, PayloadError
from durable.v1 import coordinator_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")

# How long one AwaitWorkflow call waits before asking again, when the caller waits forever.
_AWAIT_CHUNK_SECONDS = 60.0


class WorkflowStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


_STATUS = {
    pb.WORKFLOW_STATUS_PENDING: WorkflowStatus.PENDING,
    pb.WORKFLOW_STATUS_SUCCESS: WorkflowStatus.SUCCESS,
    pb.WORKFLOW_STATUS_ERROR: WorkflowStatus.ERROR,
}


@dataclass(frozen=True)
class _WorkflowSpec:
    name: str
    fn: Callable[..., Any]


_next_workflow_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durable_next_workflow_id", default=None
)


@contextlib.contextmanager
def set_workflow_id(workflow_id: str) -> Iterator[None]:
    """Start the workflows called or started inside this block under `workflow_id`."""
    token = _next_workflow_id.set(workflow_id)
    try:
        yield
    finally:
        _next_workflow_id.reset(token)


def current_workflow_id() -> str | None:
    """The ID of the workflow running in this thread, or None outside workflows."""
    context = _context.current()
    return context.workflow_id if context else None


def _recorded_result(workflow: pb.Workflow) -> Any:
    """A finished workflow's output, or its recorded error raised."""
    if workflow.HasField("error"):
        raise _payloads.exception(workflow.error)
    return _payloads.decode(workflow.output)


class WorkflowHandle(Generic[R]):
    """A started workflow: its ID, status and result, wherever it runs."""

    def __init__(self, workflow_id: str, client: Client, local: Future[Any] | None = None) -> None:
        self.workflow_id = workflow_id
        self._client = client
        self._local = local

    def status(self) -> WorkflowStatus:
        return _STATUS[self._client.get_workflow(self.workflow_id).status]

    def result(self, timeout: float | None = None) -> R:
        """Wait for the workflow's output (or raise its error).

        Raises TimeoutError if it has not finished within `timeout` seconds (None: no limit).
        """
        if self._local is not None:
            value: R = self._local.result(timeout)
            return value
        while True:
            wait = _AWAIT_CHUNK_SECONDS if timeout is None else timeout
            reply = self._client.await_workflow(self.workflow_id, wait)
            if not reply.timed_out:
                output: R = _recorded_result(reply.workflow)
                return output
            if timeout is not None:
                raise TimeoutError(f"workflow {self.workflow_id!r} did not finish in {timeout}s")


def retrieve_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowHandle[Any]:
    """A handle to an existing workflow (NOT_FOUND raises WorkflowNotFoundError)."""
    client = client or default_client()
    client.get_workflow(workflow_id)
    return WorkflowHandle(workflow_id, client)


def _spec(fn: Callable[..., Any]) -> _WorkflowSpec:
    spec = getattr(fn, "__durable_workflow__", None)
    if not isinstance(spec, _WorkflowSpec):
        raise DurableError(f"{fn!r} is not a workflow: decorate it with @durable.workflow")
    return spec


def _begin(client: Client, spec: _WorkflowSpec, args: Any, kwargs: Any) -> pb.StartWorkflowResponse:
    if _context.current() is not None:
        raise DurableError("starting a workflow from inside a workflow is not supported yet")
    input = _payloads.encode({"args": list(args), "kwargs": kwargs})
    # The ID is chosen here, not by the coordinator, so a retried start is idempotent too.
    workflow_id = _next_workflow_id.get() or str(uuid.uuid4())
    return client.start_workflow(workflow_id, spec.name, input)


def _execute(client: Client, spec: _WorkflowSpec, started: pb.StartWorkflowResponse) -> Any:
    """Run (or resume) a started workflow's body here, replaying its recorded steps."""
    workflow = started.workflow
    if workflow.status != pb.WORKFLOW_STATUS_PENDING:
        return _recorded_result(workflow)
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
    )
    token = _context.enter(context)
    try:
        value = spec.fn(*args, **kwargs)
        finish = pb.FinishWorkflowRequest(
            workflow_id=workflow.workflow_id, output=_payloads.encode(value)
        )
        raised: Exception | None = None
    except CoordinatorError:
        # Not the workflow's own outcome (the coordinator is unreachable, the code no longer
        # replays, or another run finished it): leave it for a later resume to settle.
        raise
    except Exception as exc:
        finish = pb.FinishWorkflowRequest(
            workflow_id=workflow.workflow_id, error=_payloads.failure(exc)
        )
        raised = exc
    finally:
        _context.leave(token)
    reply = client.finish_workflow(finish)
    if raised is not None and not reply.already_finished:
        raise raised
    return _recorded_result(reply.workflow)


def start_workflow(
    fn: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> WorkflowHandle[R]:
    """Start workflow `fn` in a background thread of this process and return its handle.

    The workflow ID comes from an enclosing `set_workflow_id` block, or is generated.
    Starting an ID that exists returns that workflow, resuming it here if it is PENDING.
    """
    spec = _spec(fn)
    client = default_client()
    started = _begin(client, spec, args, kwargs)
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(_execute(client, spec, started))
        except BaseException as exc:
            future.set_exception(exc)

    if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
        threading.Thread(target=run, name=f"workflow-{started.workflow.workflow_id}").start()
    else:
        run()
    return WorkflowHandle(started.workflow.workflow_id, client, future)


@overload
def workflow(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def workflow(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def workflow(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a durable workflow.

    Calling it runs it as a workflow in the calling thread (under the ID from
    `set_workflow_id`, or a new one) and returns its result; `start_workflow` runs it in
    the background. Its name defaults to "module.qualname"; pass `name=` to keep it stable
    when code moves, since a workflow is resumed under the name it was started with.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        spec = _WorkflowSpec(name or f"{fn.__module__}.{fn.__qualname__}", fn)

        @functools.wraps(fn)
        def run_here(*args: P.args, **kwargs: P.kwargs) -> R:
            client = default_client()
            started = _begin(client, spec, args, kwargs)
            result: R = _execute(client, spec, started)
            return result

        run_here.__durable_workflow__ = spec  # type: ignore[attr-defined]
        return run_here

    return decorate(fn) if fn is not None else decorate


def _run_step(context: _context.WorkflowContext, name: str, call: Callable[[], Any]) -> Any:
    step_id, recorded = context.next_step(pb.STEP_KIND_STEP, name)
    if recorded is None:
        request = pb.RunStepRequest(workflow_id=context.workflow_id, step_id=step_id, name=name)
        raised: Exception | None = None
        context.in_step = True
        try:
            request.output.CopyFrom(_payloads.encode(call()))
        except PayloadError:
            raise
        except Exception as exc:
            request.error.CopyFrom(_payloads.failure(exc))
            raised = exc
        finally:
            context.in_step = False
        reply = context.client.run_step(request)
        if raised is not None and not reply.already_recorded:
            raise raised
        recorded = reply.step
    if recorded.HasField("error"):
        raise _payloads.exception(recorded.error)
    return _payloads.decode(recorded.output)


@overload
def step(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def step(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a step: inside a workflow its outcome is recorded once, and a
    resumed workflow gets the recorded output (or error) back without running it again.

    Outputs must be JSON-serializable; the workflow sees them as JSON reads them back
    (a tuple comes back as a list), on the first run as on replays. Outside a workflow, or
    inside another step, the function simply runs.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        step_name = name or fn.__qualname__

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            context = _context.current()
            if context is None or context.in_step:
                return fn(*args, **kwargs)
            result: R = _run_step(context, step_name, lambda: fn(*args, **kwargs))
            return result

        return run

    return decorate(fn) if fn is not None else decorate
