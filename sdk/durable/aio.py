"""Durable workflows on asyncio: the async face of the SDK.

    import durable
    import durable.aio

    @durable.step
    async def charge(order_id: str) -> str: ...

    @durable.workflow
    async def checkout(order_id: str) -> str:
        await durable.aio.set_event("paymentURL", await charge(order_id))
        return "done"

    handle = await durable.aio.start_workflow(checkout, "order-1")
    url = await durable.aio.get_event(handle.workflow_id, "paymentURL", timeout=60)

The decorators are the same as the sync face's (`durable.workflow`, `durable.step`); on
`async def` functions they make async workflows and steps. Everything here returns an
awaitable (or an async iterator) and keeps the sync face's semantics, errors and
dataclasses. Inside an async workflow, call the operations of this module; their sync
twins raise DurableError there rather than block the event loop (and the reverse).

**Determinism rule.** A workflow operation takes its step position when it is *called*,
not when it is awaited. `await asyncio.gather(a(1), b(2))` numbers a before b on every run,
as do tasks made with `asyncio.create_task` in a fixed order. What must not vary between
runs is the order of the calls, as in a sync workflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from durable import _drive, _payloads
from durable._aio import drive
from durable._aio.bulk import cancel_workflows, pause_queue, resume_queue, resume_workflows
from durable._aio.client import AsyncClient, close, configure, default_client
from durable._aio.operations import delete_workflow, get_retention, set_retention
from durable._aio.schedules import (
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    set_schedule,
    trigger_schedule,
)
from durable._aio.watch import watch_workflows
from durable._aio.worker import Worker
from durable._aio.workflows import AsyncWorkflowHandle, start_workflow
from durable._aio.workflows import enqueue as _enqueue
from durable._attributes import attributes_of
from durable._attributes import outside as attributes_outside
from durable._core import ops, specs
from durable._core.context import (
    checkpointing,
    current,
    face_mismatch,
    in_step,
    step_scope,
    step_timeout,
)
from durable._core.durations import Seconds, seconds
from durable._core.durations import seconds as as_seconds
from durable._core.specs import WorkflowStatus
from durable._events import DEFAULT_TIMEOUT_SECONDS, set_event_outside
from durable._management import MAX_PAGE_SIZE as _MAX_PAGE_SIZE
from durable._management import (
    StepInfo,
    WorkflowInfo,
    list_request,
    step_info,
    workflow_info,
)
from durable._messages import DEFAULT_RECV_TIMEOUT_SECONDS, recv_outside
from durable._patches import deprecate_patch, outside
from durable._queues import Queue, QueueInfo, check_max_partitions, queue_info, queue_name_of
from durable._schedules import scheduled_time
from durable._steps import set_step_timeout, step_idempotency_key
from durable._workflow import (
    current_workflow_id,
    set_start_options,
    set_workflow_id,
    set_workflow_timeout,
)

__all__ = [
    "AsyncClient",
    "AsyncWorkflowHandle",
    "Worker",
    "cancel_workflow",
    "cancel_workflows",
    "close",
    "configure",
    "current_workflow_id",
    "delete_schedule",
    "delete_workflow",
    "deprecate_patch",
    "enqueue",
    "fork_workflow",
    "get_event",
    "get_queue",
    "get_retention",
    "get_schedule",
    "get_workflow",
    "list_events",
    "list_schedules",
    "list_steps",
    "list_workflows",
    "patched",
    "pause_queue",
    "pause_schedule",
    "recv",
    "resume_queue",
    "resume_schedule",
    "resume_workflow",
    "resume_workflows",
    "retrieve_workflow",
    "run_step",
    "scheduled_time",
    "send",
    "set_attributes",
    "set_event",
    "set_retention",
    "set_schedule",
    "set_start_options",
    "set_step_timeout",
    "set_workflow_id",
    "set_workflow_timeout",
    "sleep",
    "start_workflow",
    "step_idempotency_key",
    "trigger_schedule",
    "watch_event",
    "watch_workflows",
]

P = ParamSpec("P")
R = TypeVar("R")

# Plain (blocking) steps of async workflows run here, so the event loop goes on meanwhile.
# Bounded: at most this many run at once in the process; the rest wait their turn.
STEP_THREADS = int(os.environ.get("DURABLE_STEP_THREADS", "32"))
_step_pool = concurrent.futures.ThreadPoolExecutor(STEP_THREADS, "durable-step")


# --- patches ------------------------------------------------------------------------------


def patched(name: str) -> Awaitable[bool]:
    """Whether this run takes the new branch of patch `name`, as `durable.patched`."""
    context = checkpointing("patched", is_async=True)
    if context is None:
        raise outside("patched")
    return drive.start(ops.patched(context, name), context.client)


# --- search attributes --------------------------------------------------------------------


def set_attributes(
    attributes: Mapping[str, str | None] | None = None, /, **kv: str | None
) -> Awaitable[None]:
    """Merge search attributes into the running async workflow's; checkpointed like a
    step, as `durable.set_attributes`."""
    given = attributes_of(attributes, kv, "set_attributes")
    context = checkpointing("set_attributes", is_async=True)
    if context is None:
        raise attributes_outside(in_step())
    return drive.start(ops.set_attributes(context, given), context.client)


# --- events -------------------------------------------------------------------------------


def set_event(key: str, value: Any) -> Awaitable[None]:
    """Publish `key` = `value` from the running async workflow (last write wins);
    checkpointed like a step, as `durable.set_event`."""
    context = checkpointing("set_event", is_async=True)
    if context is None:
        raise set_event_outside(in_step())
    return drive.start(ops.set_event(context, key, value), context.client)


def get_event(
    workflow_id: str,
    key: str,
    timeout: Seconds = DEFAULT_TIMEOUT_SECONDS,
    *,
    client: AsyncClient | None = None,
) -> Awaitable[Any]:
    """The value of event `key` of a workflow, waiting up to `timeout` seconds (None if
    it passes first), as `durable.get_event`; checkpointed when awaited in a workflow."""
    timeout = seconds(timeout)
    context = checkpointing("get_event", is_async=True)
    if context is not None:
        return drive.start(ops.read_event(context, workflow_id, key, timeout), context.client)
    return _get_event(workflow_id, key, timeout, client)


async def _get_event(workflow_id: str, key: str, timeout: float, client: AsyncClient | None) -> Any:
    event = await (client or default_client()).first_event(workflow_id, key, timeout)
    return None if event is None else _payloads.decode(event.value)


async def watch_event(
    workflow_id: str,
    key: str,
    timeout: Seconds = DEFAULT_TIMEOUT_SECONDS,
    *,
    client: AsyncClient | None = None,
) -> AsyncIterator[Any]:
    """Yield the current value of event `key` and every later one, as
    `durable.watch_event`: `async for progress in durable.aio.watch_event(...)`."""
    if (context := current()) is not None and not context.is_async and not in_step():
        raise face_mismatch("watch_event", workflow_is_async=False)
    wait = seconds(timeout)
    messages = (client or default_client()).get_event(workflow_id, key, wait, follow=True)
    try:
        async for message in messages:
            if message.HasField("event"):
                yield _payloads.decode(message.event.value)
    finally:
        await messages.aclose()  # type: ignore[attr-defined]


# --- messages and sleep -------------------------------------------------------------------


def send(
    destination_id: str,
    message: Any,
    topic: str | None = None,
    *,
    idempotency_key: str | None = None,
    client: AsyncClient | None = None,
) -> Awaitable[None]:
    """Send `message` to workflow `destination_id` on `topic`, as `durable.send`."""
    context = checkpointing("send", is_async=True)
    op = ops.send(context, destination_id, message, topic, idempotency_key)
    if context is not None:
        return drive.start(op, context.client)
    inside = current()
    return _later(op, client or (inside.client if inside and inside.is_async else None))


def _later(op: ops.Op[R], client: AsyncClient | None) -> Coroutine[Any, Any, R]:
    """Drive an operation of no workflow once awaited (the default client is per loop)."""

    async def run() -> R:
        return await drive.run(op, client or default_client())

    return run()


def recv(
    topic: str | None = None, timeout: Seconds = DEFAULT_RECV_TIMEOUT_SECONDS
) -> Awaitable[Any]:
    """Receive the oldest message on `topic` in the running async workflow, as
    `durable.recv`."""
    timeout = ops.check_wait_seconds(seconds(timeout))
    context = checkpointing("recv", is_async=True)
    if context is None:
        raise recv_outside(in_step())
    return drive.start(ops.recv(context, topic, timeout), context.client)


def sleep(seconds: Seconds) -> Awaitable[None]:
    """Sleep `seconds`, checkpointed in an async workflow as `durable.sleep`; elsewhere
    (or inside a step) `asyncio.sleep`."""
    seconds = ops.check_sleep_seconds(as_seconds(seconds))
    context = checkpointing("sleep", is_async=True)
    if context is None:
        return asyncio.sleep(seconds)
    return drive.start(ops.sleep(context, seconds), context.client)


# --- steps --------------------------------------------------------------------------------


def run_step(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
    """Run the plain `@durable.step` function `fn` as a step of the running async
    workflow: in a thread of a bounded pool (`DURABLE_STEP_THREADS`, default 32), so the
    event loop goes on while it blocks; checkpointed and retried like any step. Outside a
    workflow (or inside a step) it just runs in the pool.

    A step with a timeout (its decorator's, or `durable.set_step_timeout` around this
    call) runs each attempt in a daemon thread of its own instead of the pool: at the
    timeout the workflow stops waiting, and the thread, which Python cannot stop, runs on
    until the function returns, its result dropped (docs/step-timeouts.md)."""
    specs.not_a_call(fn, "durable.aio.run_step")
    name, retry, decorated = drive.step_of(fn)
    if getattr(fn, "__wrapped__", None) is None:
        raise TypeError(f"{fn!r} is not a @durable.step function")
    plain: Callable[..., R] = fn.__wrapped__  # type: ignore[attr-defined]
    if asyncio.iscoroutinefunction(plain):
        raise TypeError(f"step {name!r} is async def: await it directly, not through run_step")
    context = checkpointing("run_step", is_async=True)
    timeout = step_timeout(decorated) if context is not None else None

    def in_pool() -> Awaitable[Any]:
        # Copied now, inside the step: the thread sees that it runs in a step.
        call = functools.partial(contextvars.copy_context().run, plain, *args, **kwargs)
        if timeout is not None:
            # Not a pool thread: one abandoned at its timeout would hold a pool slot (and
            # the process's exit) for as long as it runs on.
            thread = _drive.in_daemon_thread(call, _drive.thread_name(step_scope()))
            return asyncio.wrap_future(thread)
        return asyncio.get_running_loop().run_in_executor(_step_pool, call)

    if context is None:
        return _plain(in_pool)
    return drive.start(ops.step(context, name, retry, timeout), context.client, in_pool)


async def _plain(in_pool: Callable[[], Awaitable[R]]) -> R:
    return await in_pool()


# --- workflows ----------------------------------------------------------------------------


def enqueue(
    queue: Queue, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any
) -> Awaitable[AsyncWorkflowHandle[Any]]:
    """Enqueue workflow `fn` on `queue`, as `Queue.enqueue`: a worker serving the queue
    runs it. Options from `durable.set_enqueue_options`. `fn` may be the workflow's name
    (a str), for a worker that registers it."""
    if not isinstance(queue, Queue):
        raise TypeError(f"queue must be a durable.Queue, not {queue!r}")
    return _enqueue(queue.name, fn, *args, **kwargs)


async def get_queue(
    queue: Queue | str, *, max_partitions: int | None = None, client: AsyncClient | None = None
) -> QueueInfo:
    """Queue `queue`'s limits and load, in total and per partition, as `durable.get_queue`."""
    limit = check_max_partitions(max_partitions)
    reply = await (client or default_client()).get_queue(queue_name_of(queue), limit)
    return queue_info(reply)


async def retrieve_workflow(
    workflow_id: str, *, client: AsyncClient | None = None
) -> AsyncWorkflowHandle[Any]:
    """A handle to an existing workflow (NOT_FOUND raises WorkflowNotFoundError)."""
    client = client or default_client()
    await client.get_workflow(workflow_id)
    return AsyncWorkflowHandle(workflow_id, client)


# --- management ---------------------------------------------------------------------------


async def list_workflows(
    *,
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
    name: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_workflow_id: str | None = None,
    queue_name: str | None = None,
    page_size: int = 100,
    app_version: str | None = None,
    schedule_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    client: AsyncClient | None = None,
) -> AsyncIterator[WorkflowInfo]:
    """Workflows, newest first, as `durable.list_workflows`: `async for info in ...`."""
    request = list_request(
        status,
        name,
        created_after,
        created_before,
        parent_workflow_id,
        queue_name,
        page_size,
        app_version=app_version,
        schedule_name=schedule_name,
        attributes=attributes,
    )
    client = client or default_client()
    while True:
        reply = await client.list_workflows(request)
        for message in reply.workflows:
            yield workflow_info(message)
        if not reply.next_page_token:
            return
        request.page_token = reply.next_page_token


async def get_workflow(workflow_id: str, *, client: AsyncClient | None = None) -> WorkflowInfo:
    """The workflow with this ID (WorkflowNotFoundError if there is none)."""
    return workflow_info(await (client or default_client()).get_workflow(workflow_id))


async def list_steps(workflow_id: str, *, client: AsyncClient | None = None) -> list[StepInfo]:
    """Every recorded step of a workflow, in step order, with its failed attempts."""
    client = client or default_client()
    found: list[StepInfo] = []
    after = 0
    while True:
        reply = await client.list_steps(workflow_id, after_step_id=after, page_size=_MAX_PAGE_SIZE)
        found.extend(step_info(step) for step in reply.steps)
        if not reply.has_more or not reply.steps:
            return found
        after = reply.steps[-1].step_id


async def list_events(workflow_id: str, *, client: AsyncClient | None = None) -> dict[str, Any]:
    """The latest value of each event a workflow has set, by key."""
    events = await (client or default_client()).list_events(workflow_id)
    return {event.key: _payloads.decode_or_raw(event.value.value) for event in events}


async def cancel_workflow(workflow_id: str, *, client: AsyncClient | None = None) -> WorkflowInfo:
    """Cancel a PENDING or ENQUEUED workflow, as `durable.cancel_workflow`."""
    return workflow_info(await (client or default_client()).cancel_workflow(workflow_id))


async def resume_workflow(workflow_id: str, *, client: AsyncClient | None = None) -> WorkflowInfo:
    """Resume a CANCELLED or DEAD_LETTER workflow, as `durable.resume_workflow`."""
    return workflow_info(await (client or default_client()).resume_workflow(workflow_id))


async def fork_workflow(
    workflow_id: str,
    start_step: int,
    *,
    new_workflow_id: str | None = None,
    app_version: str | None = None,
    client: AsyncClient | None = None,
) -> AsyncWorkflowHandle[Any]:
    """Fork a workflow from `start_step`, as `durable.fork_workflow`."""
    client = client or default_client()
    forked = await client.fork_workflow(
        workflow_id, start_step, new_workflow_id or "", app_version or ""
    )
    return AsyncWorkflowHandle(forked.workflow_id, client)
