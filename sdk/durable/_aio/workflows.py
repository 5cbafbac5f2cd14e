"""`async def` workflows: running one in a task, starting and awaiting it, and its handle
(the async face; what a start or a finish means is `_core.specs` and `_core.ops`)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from durable import _running, _session
from durable._aio import drive
from durable._aio.client import AsyncClient, default_client
from durable._core import ops, specs
from durable._core.context import starting_context
from durable._core.durations import Seconds, optional_seconds
from durable._core.specs import QueueStart, Started, WorkflowSpec, recorded_result, status_of
from durable._workflow import STOPPED_HERE, log_stopped
from durable.errors import DurableError
from durable.v1 import coordinator_pb2 as pb

R = TypeVar("R")

log = logging.getLogger("durable.workflow")

# Workflows started as tasks of this process: held here so that a task is not collected
# while it runs, even when nobody keeps its handle.
_tasks: set[asyncio.Task[Any]] = set()


class AsyncWorkflowHandle(Generic[R]):
    """A started workflow: its ID, status and result, wherever it runs (awaitable)."""

    def __init__(
        self, workflow_id: str, client: AsyncClient, local: asyncio.Task[Any] | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self._client = client
        self._local = local

    async def status(self) -> specs.WorkflowStatus:
        return status_of((await self._client.get_workflow(self.workflow_id)).status)

    async def result(self, timeout: Seconds | None = None) -> R:
        """Wait for the workflow's output (or raise its error), as
        `durable.WorkflowHandle.result`: TimeoutError after `timeout` seconds (None: no
        limit). Cancelling the wait does not cancel the workflow."""
        timeout = optional_seconds(timeout)
        deadline = specs.Deadline(timeout)
        if self._local is not None:
            try:
                # Shielded: the caller's timeout or cancellation ends the wait, not the run.
                value: R = await asyncio.wait_for(asyncio.shield(self._local), timeout)
                return value
            except STOPPED_HERE:
                pass
            except asyncio.TimeoutError:
                if not self._local.done():
                    raise TimeoutError(
                        f"workflow {self.workflow_id!r} did not finish in {timeout}s"
                    ) from None
                raise
        output: R = await drive.run(specs.await_result(self.workflow_id, deadline), self._client)
        return output


def _spec(fn: Callable[..., Any]) -> WorkflowSpec:
    specs.not_a_call(fn, "durable.aio.start_workflow")
    spec = specs.spec_of(fn)
    if not spec.is_async:
        raise DurableError(
            f"workflow {spec.name!r} is a plain function: start it with"
            " durable.start_workflow, or make it `async def` for durable.aio"
        )
    return spec


def begin(
    spec: WorkflowSpec, args: Any, kwargs: Any, queue: QueueStart | None = None
) -> Awaitable[tuple[AsyncClient, Started]]:
    """Start (or find) the workflow through this caller's client; the awaitable returns
    both. Inside a workflow the child takes its parent's step position now, at the call;
    the start itself is sent when the coroutine is awaited."""
    context = starting_context("start_workflow", is_async=True)
    if context is None:
        # Made when awaited: a call that is never awaited leaves no coroutine behind.
        return _Deferred(lambda: _begin_top(spec, args, kwargs, queue))
    op = specs.begin(context, spec, args, kwargs, queue=queue)
    return _through(context.client, drive.start(op, context.client))


class _Deferred(Generic[R]):
    """An awaitable that makes its coroutine only when it is awaited."""

    def __init__(self, make: Callable[[], Coroutine[Any, Any, R]]) -> None:
        self._make = make

    def __await__(self) -> Generator[Any, None, R]:
        return self._make().__await__()


async def _through(
    client: AsyncClient, starting: Coroutine[Any, Any, Started]
) -> tuple[AsyncClient, Started]:
    return client, await starting


async def _begin_top(
    spec: WorkflowSpec, args: Any, kwargs: Any, queue: QueueStart | None
) -> tuple[AsyncClient, Started]:
    # The default client is per event loop, so it is looked up here, once the loop runs:
    # `asyncio.run(workflow(...))` makes the call before.
    client = default_client()
    session, version = ("", "") if queue else _session.session_for(client)
    op = specs.begin(
        None,
        spec,
        args,
        kwargs,
        session_executor=session,
        session_version=version,
        queue=queue,
    )
    return client, await drive.run(op, client)


async def execute(client: AsyncClient, spec: WorkflowSpec, started: Started) -> Any:
    """Run (or resume) a started workflow's body in this task, replaying its records."""
    if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
        async with _running.only_run_here_async(started.workflow.workflow_id) as waited:
            if waited:
                # Another run of it in this process just ended: go on from its records.
                started = await drive.run(specs.restart(started, spec), client)
            if started.workflow.status == pb.WORKFLOW_STATUS_PENDING:
                return await _run_body(client, spec, started)
    workflow = started.workflow
    if workflow.status == pb.WORKFLOW_STATUS_ENQUEUED:
        # Waiting for a worker (it was resumed or forked): not this caller's to run.
        return await AsyncWorkflowHandle[Any](workflow.workflow_id, client).result()
    return recorded_result(workflow)


async def _run_body(client: AsyncClient, spec: WorkflowSpec, started: Started) -> Any:
    history = await drive.run(specs.history(started.reply), client)
    context, args, kwargs = specs.run_context(started, client, history, is_async=True)
    with specs.running(context):
        try:
            outcome = ops.Outcome(value=await spec.fn(*args, **kwargs))
        except Exception as exc:
            if ops.body_outcome_error(exc) is None:
                raise
            outcome = ops.Outcome(error=exc)
    reply = await drive.run(ops.finish(context, outcome), client)
    return recorded_result(reply.workflow)


async def _run_task(client: AsyncClient, spec: WorkflowSpec, started: Started) -> Any:
    try:
        return await execute(client, spec, started)
    except STOPPED_HERE as exc:
        log_stopped(started.workflow.workflow_id, exc)
        raise


def start_workflow(
    fn: Callable[..., Any] | str, *args: Any, **kwargs: Any
) -> Coroutine[Any, Any, AsyncWorkflowHandle[Any]]:
    """Start `async def` workflow `fn` as a task of this event loop and return its
    AsyncWorkflowHandle, as `durable.start_workflow` does with a thread: the same ID
    (`set_workflow_id`), timeout (`set_workflow_timeout`), idempotency and worker session
    rules. Inside an async workflow the start is checkpointed as its step (a child).

    By name (`fn` a str): as `durable.start_workflow` by name, never run here but created
    ENQUEUED for a worker (sync or async, any language) that registers the name."""
    if isinstance(fn, str):
        return _enqueued(begin(specs.named_spec(fn), args, kwargs))
    spec = _spec(fn)
    child = starting_context("start_workflow", is_async=True) is not None
    return _start(spec, begin(spec, args, kwargs), child)


async def _start(
    spec: WorkflowSpec, starting: Awaitable[tuple[AsyncClient, Started]], child: bool
) -> AsyncWorkflowHandle[Any]:
    client, started = await starting
    workflow_id = started.workflow.workflow_id
    if started.workflow.status != pb.WORKFLOW_STATUS_PENDING or (
        child and specs.run_elsewhere(started)
    ):
        return AsyncWorkflowHandle(workflow_id, client)  # finished, or run by a worker
    task = asyncio.create_task(_run_task(client, spec, started), name=f"workflow-{workflow_id}")
    _tasks.add(task)
    task.add_done_callback(_forget)
    return AsyncWorkflowHandle(workflow_id, client, task)


def _forget(task: asyncio.Task[Any]) -> None:
    """A started workflow's task ended: drop it. Its outcome is recorded by the
    coordinator (and given to whoever awaits the handle), so an error nobody awaited is
    not "never retrieved"."""
    _tasks.discard(task)
    if not task.cancelled():
        task.exception()


def enqueue(
    queue_name: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any
) -> Coroutine[Any, Any, AsyncWorkflowHandle[Any]]:
    """`durable.aio.enqueue`: see there (`fn` may be a workflow's name)."""
    specs.not_a_call(fn, "durable.aio.enqueue")
    return _enqueued(begin(specs.spec_for(fn), args, kwargs, QueueStart.on(queue_name)))


async def _enqueued(
    starting: Awaitable[tuple[AsyncClient, Started]],
) -> AsyncWorkflowHandle[Any]:
    client, started = await starting
    return AsyncWorkflowHandle(started.workflow.workflow_id, client)


def run_here_async(spec: WorkflowSpec) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The `@durable.workflow` wrapper of an `async def` function: awaiting a call runs
    the workflow in the awaiting task (inside a workflow: as its child)."""

    @functools.wraps(spec.fn)
    def run_here(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        child = starting_context("start_workflow", is_async=True) is not None
        return _run_here(spec, begin(spec, args, kwargs), child)

    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(run_here)
    run_here.__durable_workflow__ = spec  # type: ignore[attr-defined]
    return run_here


async def _run_here(
    spec: WorkflowSpec, starting: Awaitable[tuple[AsyncClient, Started]], child: bool
) -> Any:
    client, started = await starting
    workflow_id = started.workflow.workflow_id
    if child and specs.run_elsewhere(started):
        return await AsyncWorkflowHandle[Any](workflow_id, client).result()
    try:
        return await execute(client, spec, started)
    except STOPPED_HERE as exc:
        log_stopped(workflow_id, exc)
        return await AsyncWorkflowHandle[Any](workflow_id, client).result()
