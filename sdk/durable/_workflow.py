"""Workflows: the decorator, starting and resuming, timeouts, and handles to results (the
sync face; what a start or a finish means is `_core.specs` and `_core.ops`)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from durable import _drive, _running, _session
from durable._client import Client, default_client
from durable._core import ops, specs
from durable._core.context import current, starting_context
from durable._core.durations import Seconds, optional_seconds
from durable._core.specs import (
    QueueStart,
    Started,
    WorkflowSpec,
    WorkflowStatus,
    recorded_result,
    spec_of,
    status_of,
)
from durable.errors import DurableError, WorkflowNotPendingError, WorkflowOwnershipLostError
from durable.v1 import coordinator_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("durable.workflow")

# A run in this process that ends with one of these did not settle the workflow: it was
# cancelled, another worker took it over, or another run finished it. Its outcome is the
# coordinator's to tell.
STOPPED_HERE = (WorkflowOwnershipLostError, WorkflowNotPendingError)


@contextlib.contextmanager
def set_workflow_id(workflow_id: str) -> Iterator[None]:
    """Start the workflows called or started inside this block under `workflow_id`."""
    token = specs.next_workflow_id.set(workflow_id)
    try:
        yield
    finally:
        specs.next_workflow_id.reset(token)


@contextlib.contextmanager
def set_workflow_timeout(seconds: Seconds | None) -> Iterator[None]:
    """Start the workflows called or started inside this block with this timeout (None: no
    timeout), instead of their decorator's `timeout`.

    The coordinator cancels a workflow still unfinished `seconds` after it was first
    started; the run stops at its next step (WorkflowCancelledError). Applies only when
    the start creates the workflow: an existing one keeps its deadline.
    """
    token = specs.next_timeout.set(specs.check_timeout(optional_seconds(seconds)))
    try:
        yield
    finally:
        specs.next_timeout.reset(token)


@contextlib.contextmanager
def set_start_options(
    *,
    delay: Seconds | None = None,
    at: datetime | None = None,
    debounce_key: str | None = None,
    debounce: Seconds | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Start the workflows started or enqueued inside this block later: `delay` seconds
    from now (0 to 365 days), or `at` an aware datetime (a past one means now), or
    debounced: of a burst of starts of the same workflow with the same `debounce_key`,
    only one workflow runs, once no start has come for `debounce` seconds (1 ms to a day),
    with the newest start's arguments; every start of the burst returns its handle (the
    first start's ID).

    The start returns at once: the workflow is stored ENQUEUED with its due time
    (`WorkflowInfo.due_time`), and a worker registering it (for a queue: serving the
    queue) claims it when due, exactly once; it never runs in the starting process as its
    starter, even when a worker runs there. Its timeout counts from when it is due.
    ValueError names an option out of range or not allowed with another; a debounce is
    not allowed for a child workflow (DurableError). Applies to `start_workflow`,
    `Queue.enqueue` and their durable.aio twins, and to calling a workflow (which then
    waits for its result).

    `attributes`: the search attributes (str keys and values) the workflows are created
    with, to find them by (`list_workflows(attributes=...)`); also for child workflows
    and starts by name. A block that gives only `attributes` keeps the enclosing block's
    timing; one that gives no `attributes` keeps the enclosing block's. An existing
    workflow keeps the attributes it was created with. TypeError for what is not str to
    str; the coordinator checks the limits (see docs/search-attributes.md).
    """
    given = None if attributes is None else specs.check_attributes(attributes, "attributes")
    only_attributes = given is not None and delay is None and at is None
    only_attributes = only_attributes and debounce_key is None and debounce is None
    timing = specs.start_timing(
        optional_seconds(delay), at, debounce_key, optional_seconds(debounce)
    )
    token = None if only_attributes else specs.next_start_timing.set(timing)
    attributes_token = None if given is None else specs.next_start_attributes.set(given)
    try:
        yield
    finally:
        if attributes_token is not None:
            specs.next_start_attributes.reset(attributes_token)
        if token is not None:
            specs.next_start_timing.reset(token)


def current_workflow_id() -> str | None:
    """The ID of the workflow running in this thread or task, or None outside workflows."""
    context = current()
    return context.workflow_id if context else None


class WorkflowHandle(Generic[R]):
    """A started workflow: its ID, status and result, wherever it runs."""

    def __init__(self, workflow_id: str, client: Client, local: Future[Any] | None = None) -> None:
        self.workflow_id = workflow_id
        self._client = client
        self._local = local

    def status(self) -> WorkflowStatus:
        return status_of(self._client.get_workflow(self.workflow_id).status)

    def result(self, timeout: Seconds | None = None) -> R:
        """Wait for the workflow's output (or raise its error).

        Raises TimeoutError if it has not finished within `timeout` seconds (None: no limit),
        WorkflowCancelledError if it was cancelled, WorkflowDeadLetterError if its workers
        kept dying. A PENDING or ENQUEUED workflow is waited for, wherever it runs: if this
        process's run of it stopped (another worker took it over), the wait goes on for the
        outcome the other worker records.
        """
        timeout = optional_seconds(timeout)
        deadline = specs.Deadline(timeout)
        if self._local is not None:
            try:
                value: R = self._local.result(timeout)
                return value
            except STOPPED_HERE:
                pass
        waiting = specs.await_result(self.workflow_id, deadline)
        output: R = _drive.run(waiting, self._client)
        return output


def log_stopped(workflow_id: str, error: Exception) -> None:
    """Note a run in this process that stopped without settling its workflow."""
    log.info("workflow %s stopped running here (%s: %s)", workflow_id, type(error).__name__, error)


def retrieve_workflow(workflow_id: str, *, client: Client | None = None) -> WorkflowHandle[Any]:
    """A handle to an existing workflow (NOT_FOUND raises WorkflowNotFoundError)."""
    client = client or default_client()
    client.get_workflow(workflow_id)
    return WorkflowHandle(workflow_id, client)


def begin(
    spec: WorkflowSpec, args: Any, kwargs: Any, queue: QueueStart | None = None
) -> tuple[Client, Started]:
    """Start (or find) the workflow through this caller's client: a workflow's own inside
    one (as its child), else the default client."""
    context = starting_context("start_workflow", is_async=False)
    client = context.client if context is not None else default_client()
    session, version = ("", "") if context is not None else _session.session_for(client)
    op = specs.begin(
        context,
        spec,
        args,
        kwargs,
        session_executor=session,
        session_version=version,
        queue=queue,
    )
    return client, _drive.run(op, client)


def execute(client: Client, spec: WorkflowSpec, started: Started) -> Any:
    """Run (or resume) a started workflow's body here, replaying its recorded steps.

    Its worker session (`started.executor_id`) fences its writes. Raises
    WorkflowCancelledError or WorkflowOwnershipLostError when the run has to stop.
    """
    if spec.is_async:
        raise DurableError(
            f"workflow {spec.name!r} is async def: start it with durable.aio.start_workflow"
            " or run it in a durable.aio.Worker"
        )
    if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
        with _running.only_run_here(started.workflow.workflow_id) as waited:
            if waited:
                # Another run of it in this process just ended: go on from its records.
                started = _drive.run(specs.restart(started, spec), client)
            if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
                return _run_body(client, spec, started)
    workflow = started.workflow
    if workflow.status == pb.WORKFLOW_STATUS_ENQUEUED:
        # Waiting for a worker (it was resumed or forked): not this caller's to run.
        return WorkflowHandle(workflow.workflow_id, client).result()
    return recorded_result(workflow)


def _run_body(client: Client, spec: WorkflowSpec, started: Started) -> Any:
    history = _drive.run(specs.history(started.reply), client)
    context, args, kwargs = specs.run_context(started, client, history, is_async=False)
    with specs.running(context):
        try:
            outcome = ops.Outcome(value=spec.fn(*args, **kwargs))
        except Exception as exc:
            if ops.body_outcome_error(exc) is None:
                raise
            outcome = ops.Outcome(error=exc)
    reply = _drive.run(ops.finish(context, outcome), client)
    return recorded_result(reply.workflow)


@overload
def start_workflow(fn: str, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]: ...
@overload
def start_workflow(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]: ...
def start_workflow(fn: Any, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
    """Start workflow `fn` in a background thread of this process and return its handle.

    The workflow ID comes from an enclosing `set_workflow_id` block, or is generated; the
    timeout from `set_workflow_timeout`, or the decorator. Starting an ID that exists
    returns that workflow, resuming it here if it is PENDING. While a `Worker` is started
    in this process (on the same client), the workflow runs under its session: if this
    process dies, another worker finishes it. An `async def` workflow is started with
    `durable.aio.start_workflow`.

    By name (`fn` a str, such as "orders.process"): the workflow is not run here, even if
    this process has its function. It is created ENQUEUED, for any worker that registers
    the name (`durable.Worker`, or one in another language) to claim; the arguments must be
    JSON values, and the handle's result is the decoded JSON output. Inside a workflow the
    start is checkpointed as a step, as any child's.
    """
    if isinstance(fn, str):
        client, started = begin(specs.named_spec(fn), args, kwargs)
        return WorkflowHandle(started.workflow.workflow_id, client)
    spec = spec_of(fn)
    if spec.is_async:
        raise DurableError(
            f"workflow {spec.name!r} is async def: start it with"
            " `await durable.aio.start_workflow(...)`"
        )
    child = current() is not None
    client, started = begin(spec, args, kwargs)
    workflow_id = started.workflow.workflow_id
    if started.workflow.status != pb.WORKFLOW_STATUS_PENDING or (
        child and specs.run_elsewhere(started)
    ):
        return WorkflowHandle(workflow_id, client)  # finished, or run by a worker
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(execute(client, spec, started))
        except STOPPED_HERE as exc:
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
    *, name: str | None = None, timeout: Seconds | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: Seconds | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a durable workflow.

    Calling it runs it as a workflow in the calling thread (under the ID from
    `set_workflow_id`, or a new one) and returns its result; `start_workflow` runs it in
    the background. Its name defaults to "module.qualname"; pass `name=` to keep it stable
    when code moves, since a workflow is resumed under the name it was started with.
    `timeout`: seconds after its start at which the coordinator cancels it if unfinished
    (`set_workflow_timeout` overrides it per start).

    An `async def` workflow runs on the event loop: awaiting a call of it runs it as a
    workflow in the awaiting task, `durable.aio.start_workflow` starts it as a task, and
    `durable.aio.Worker` runs it for the coordinator.
    """
    timeout = specs.check_timeout(optional_seconds(timeout))

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if not callable(fn):
            raise TypeError(f"@durable.workflow decorates a function, not {fn!r}")
        is_async = inspect.iscoroutinefunction(fn)
        spec = WorkflowSpec(name or f"{fn.__module__}.{fn.__qualname__}", fn, timeout, is_async)
        if is_async:
            from durable._aio import workflows  # the async face imports this module

            wrapped: Any = workflows.run_here_async(spec)
            return cast(Callable[P, R], wrapped)

        @functools.wraps(fn)
        def run_here(*args: P.args, **kwargs: P.kwargs) -> R:
            child = current() is not None
            client, started = begin(spec, args, kwargs)
            if child and specs.run_elsewhere(started):
                return WorkflowHandle[R](started.workflow.workflow_id, client).result()
            try:
                result: R = execute(client, spec, started)
            except STOPPED_HERE as exc:
                log_stopped(started.workflow.workflow_id, exc)
                result = WorkflowHandle[R](started.workflow.workflow_id, client).result()
            return result

        run_here.__durable_workflow__ = spec  # type: ignore[attr-defined]
        return run_here

    return decorate(fn) if fn is not None else decorate
