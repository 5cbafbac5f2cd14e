"""Workflows as data: their specs, the options a start takes from the caller's context,
what a start request holds (also for a child, checkpointed as its parent's step), and what
a finished workflow's record means."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import hashlib
import inspect
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import grpc

from durable import _payloads
from durable._core import ops
from durable._core.context import WorkflowContext, enter, leave
from durable.errors import (
    DurableError,
    NonDeterminismError,
    PayloadError,
    WorkflowCancelledError,
    WorkflowDeadLetterError,
    WorkflowNotPendingError,
)
from durable.v1 import coordinator_pb2 as pb

# The longest workflow timeout the coordinator accepts (a year).
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0


class WorkflowStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    DEAD_LETTER = "DEAD_LETTER"
    ENQUEUED = "ENQUEUED"


def status_of(value: pb.WorkflowStatus.ValueType) -> WorkflowStatus:
    return WorkflowStatus(pb.WorkflowStatus.Name(value).removeprefix("WORKFLOW_STATUS_"))


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    fn: Callable[..., Any]
    # Seconds after its start at which the coordinator cancels it; None: never.
    timeout: float | None = None
    # An `async def` workflow, run by the async face (durable.aio).
    is_async: bool = False
    # Started by name, with no function here: a worker that registers the name runs it.
    by_name: bool = False


def spec_of(fn: Callable[..., Any]) -> WorkflowSpec:
    spec = getattr(fn, "__durable_workflow__", None)
    if not isinstance(spec, WorkflowSpec):
        raise DurableError(f"{fn!r} is not a workflow: decorate it with @durable.workflow")
    return spec


MAX_NAME_CHARS = 256


def named_spec(name: str) -> WorkflowSpec:
    """The spec of a workflow started by its name: never run by the starter, but created
    ENQUEUED for a worker that registers the name (on a queue: one serving the queue)."""
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"a workflow name must be 1-{MAX_NAME_CHARS} characters, not {name!r}")

    def run_by_a_worker(*args: Any, **kwargs: Any) -> Any:
        raise DurableError(f"workflow {name!r} was started by name: a worker runs it")

    return WorkflowSpec(name, run_by_a_worker, by_name=True)


def spec_for(fn_or_name: Callable[..., Any] | str) -> WorkflowSpec:
    """The spec of a workflow function, or of a workflow named by a str (`named_spec`)."""
    return named_spec(fn_or_name) if isinstance(fn_or_name, str) else spec_of(fn_or_name)


def not_a_call(fn: object, what: str) -> None:
    """Refuse a coroutine where a function is expected (`start_workflow(wf(1))` for
    `start_workflow(wf, 1)`), closing it so that it is not left never awaited."""
    if inspect.iscoroutine(fn):
        fn.close()
        raise DurableError(
            f"{what} takes the function and its arguments, not a call of it:"
            f" {what}(fn, *args), not {what}(fn(*args))"
        )


def check_timeout(seconds: float | None) -> float | None:
    if seconds is not None and not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"a workflow timeout must be 0 < seconds <= {MAX_TIMEOUT_SECONDS:.0f}")
    return seconds


# --- start options, from the caller's context ---------------------------------------------

next_workflow_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durable_next_workflow_id", default=None
)
# Unset (the decorator's default applies), or the timeout to start with (None: no timeout).
UNSET = object()
next_timeout: contextvars.ContextVar[object] = contextvars.ContextVar(
    "durable_next_workflow_timeout", default=UNSET
)


@dataclass(frozen=True)
class EnqueueOptions:
    """How `Queue.enqueue` calls in a `set_enqueue_options` block enqueue."""

    priority: int = 0
    deduplication_id: str = ""
    partition_key: str = ""


next_enqueue_options: contextvars.ContextVar[EnqueueOptions | None] = contextvars.ContextVar(
    "durable_next_enqueue_options", default=None
)


@dataclass(frozen=True)
class QueueStart:
    """Enqueue the workflow being started on this queue."""

    name: str
    priority: int = 0
    deduplication_id: str = ""
    partition_key: str = ""

    @classmethod
    def on(cls, queue_name: str) -> QueueStart:
        """Onto `queue_name`, with the options of an enclosing `set_enqueue_options` block."""
        options = next_enqueue_options.get() or EnqueueOptions()
        return cls(queue_name, options.priority, options.deduplication_id, options.partition_key)


# The furthest ahead a start may be delayed (a year) and the longest debounce (a day), as
# the coordinator accepts them.
MAX_DELAY_SECONDS = 365 * 24 * 3600.0
MAX_DEBOUNCE_SECONDS = 24 * 3600.0
MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class StartTiming:
    """When the workflows started in a `set_start_options` block start: after `delay`
    seconds, at `start_at`, or debounced (`debounce_key`, quiet for `debounce` seconds).
    Each is due later, so it is created ENQUEUED and a worker claims it then."""

    delay: float | None = None
    start_at: datetime | None = None
    debounce_key: str = ""
    debounce: float | None = None

    def options(self) -> dict[str, Any]:
        """The `start_request` arguments it sets."""
        if self.debounce_key:
            return {"debounce_key": self.debounce_key, "debounce": self.debounce}
        if self.start_at is not None:
            return {"start_at": self.start_at}
        return {"delay": self.delay}


def start_timing(
    delay: float | None,
    at: datetime | None,
    debounce_key: str | None,
    debounce: float | None,
) -> StartTiming | None:
    """The checked options of `set_start_options` (None: start at once); ValueError naming
    the option that is out of range or not allowed with another."""
    if delay is not None and at is not None:
        raise ValueError("set_start_options: pass delay or at, not both")
    if debounce_key is not None or debounce is not None:
        if delay is not None or at is not None:
            raise ValueError("set_start_options: debounce_key is not allowed with delay or at")
        if debounce is None:
            raise ValueError("set_start_options: debounce_key needs debounce (the quiet time)")
        if debounce_key is None:
            raise ValueError("set_start_options: debounce needs a debounce_key")
        if not isinstance(debounce_key, str) or not 1 <= len(debounce_key) <= MAX_KEY_CHARS:
            raise ValueError(
                f"set_start_options: debounce_key must be 1-{MAX_KEY_CHARS} characters,"
                f" not {debounce_key!r}"
            )
        if not 0.001 <= debounce <= MAX_DEBOUNCE_SECONDS:
            raise ValueError(
                f"set_start_options: debounce must be 0.001 <= seconds <="
                f" {MAX_DEBOUNCE_SECONDS:.0f} (a day), not {debounce}"
            )
        return StartTiming(debounce_key=debounce_key, debounce=debounce)
    if delay is not None:
        if not 0 <= delay <= MAX_DELAY_SECONDS:
            raise ValueError(
                f"set_start_options: delay must be 0 <= seconds <= {MAX_DELAY_SECONDS:.0f}"
                f" (365 days), not {delay}"
            )
        return StartTiming(delay=delay)
    if at is not None:
        if not isinstance(at, datetime):
            raise TypeError(f"set_start_options: at must be a datetime, not {at!r}")
        if at.tzinfo is None:
            raise ValueError(
                f"set_start_options: at {at!r} has no time zone: pass an aware datetime"
            )
        ahead = (at - datetime.now(timezone.utc)).total_seconds()
        if ahead > MAX_DELAY_SECONDS:
            raise ValueError(f"set_start_options: at {at.isoformat()} is more than 365 days ahead")
        return StartTiming(start_at=at)  # a past time means now
    return None


next_start_timing: contextvars.ContextVar[StartTiming | None] = contextvars.ContextVar(
    "durable_next_start_timing", default=None
)


# The search attributes of the workflows started in a `set_start_options(attributes=...)`
# block (None: none given).
next_start_attributes: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "durable_next_start_attributes", default=None
)


def check_attributes(
    attributes: Mapping[str, str | None], what: str, *, removals: bool = False
) -> dict[str, str]:
    """Search attributes as given to `what`: a mapping of str keys to str values (with
    `removals`, None or "" removes its key, sent as ""); TypeError otherwise. Keys and
    values within the coordinator's limits (32 keys of 1-64 characters of [A-Za-z0-9._-],
    values of 1-256 printable characters) are the coordinator's to check: it answers
    INVALID_ARGUMENT naming `attributes`."""
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{what}: attributes must be a mapping of str to str, not {attributes!r}")
    checked: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise TypeError(f"{what}: attribute key {key!r} is not a str")
        if value is None and removals:
            value = ""
        if not isinstance(value, str):
            raise TypeError(
                f"{what}: the value of attribute {key!r} is not a str: {value!r}"
                " (search attributes are strings; convert it with str())"
            )
        checked[key] = value
    return checked


@contextlib.contextmanager
def running(context: WorkflowContext) -> Iterator[None]:
    """Run a workflow body in this block: its context entered, and the start options of an
    enclosing block (e.g. the caller's set_workflow_id, when a child runs inline in its
    parent) cleared, since they are for that block's own start, not this body's."""
    token = enter(context)
    reset = (
        next_workflow_id.set(None),
        next_timeout.set(UNSET),
        next_enqueue_options.set(None),
        next_start_timing.set(None),
        next_start_attributes.set(None),
    )
    try:
        yield
    finally:
        next_start_attributes.reset(reset[4])
        next_start_timing.reset(reset[3])
        next_enqueue_options.reset(reset[2])
        next_timeout.reset(reset[1])
        next_workflow_id.reset(reset[0])
        leave(token)


# --- starting -----------------------------------------------------------------------------


def child_workflow_id(parent_id: str, step_id: int) -> str:
    """The ID of the child a workflow starts at `step_id` without `set_workflow_id`: the
    same on every replay. Kept within the 256 characters a workflow ID may have."""
    suffix = f"-{step_id}"
    if len(parent_id) + len(suffix) <= 256:
        return parent_id + suffix
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:16]
    return f"{parent_id[:200]}-{digest}{suffix}"


def start_request(
    workflow_id: str,
    name: str,
    input: pb.Payload,
    *,
    executor_id: str = "",
    timeout: float | None = None,
    queue_name: str = "",
    priority: int = 0,
    deduplication_id: str = "",
    parent: pb.StepRef | None = None,
    app_version: str = "",
    partition_key: str = "",
    delay: float | None = None,
    start_at: datetime | None = None,
    debounce_key: str = "",
    debounce: float | None = None,
    attributes: Mapping[str, str] | None = None,
) -> pb.StartWorkflowRequest:
    """The StartWorkflow request of a client's `start_workflow` (same arguments; `delay`
    and `debounce` in seconds, `start_at` an aware datetime, `attributes` the search
    attributes the workflow is created with)."""
    request = pb.StartWorkflowRequest(
        workflow_id=workflow_id,
        name=name,
        input=input,
        executor_id=executor_id,
        queue_name=queue_name,
        priority=priority,
        deduplication_id=deduplication_id,
        parent=parent,
        app_version=app_version,
        partition_key=partition_key,
        debounce_key=debounce_key,
        attributes=attributes or {},
    )
    if timeout is not None:
        request.timeout.CopyFrom(ops.duration(timeout))
    if delay is not None:
        request.delay.CopyFrom(ops.duration(delay))
    if start_at is not None:
        if start_at.tzinfo is None:
            raise ValueError(f"start_at {start_at!r} has no time zone: pass an aware datetime")
        request.start_at.FromDatetime(start_at.astimezone(timezone.utc))
    if debounce is not None:
        request.debounce.CopyFrom(ops.duration(debounce))
    return request


def _start(
    workflow_id: str,
    spec: WorkflowSpec,
    input: pb.Payload,
    executor_id: str,
    timeout: float | None,
    queue: QueueStart | None,
    parent: pb.StepRef | None = None,
    app_version: str = "",
    timing: StartTiming | None = None,
    attributes: dict[str, str] | None = None,
) -> ops.Call:
    """The client call that starts the workflow (see `start_request` for its arguments).
    A workflow run here records the code's version; an enqueued one takes the version of
    the worker that claims it."""
    options: dict[str, Any] = {"executor_id": executor_id, "timeout": timeout, "parent": parent}
    if queue is None and app_version and not spec.by_name:
        options["app_version"] = app_version
    if queue is None and spec.by_name:
        # Created ENQUEUED with no queue, due at once: any worker registering the name may
        # claim it (PollWork), and no process runs it as its starter.
        options["delay"] = 0.0
    if queue is not None:
        options.update(
            queue_name=queue.name,
            priority=queue.priority,
            deduplication_id=queue.deduplication_id,
            partition_key=queue.partition_key,
        )
    if timing is not None:
        # Due later: created ENQUEUED, so, as an enqueued one, it takes the version of the
        # worker that claims it.
        options.pop("app_version", None)
        options.pop("delay", None)
        options.update(timing.options())
    if attributes:
        options["attributes"] = attributes
    return ops.Call("start_workflow", (workflow_id, spec.name, input), options)


@dataclass(frozen=True)
class Started:
    """A started (or found) workflow and the worker session it runs under."""

    reply: pb.StartWorkflowResponse
    executor_id: str

    @property
    def workflow(self) -> pb.Workflow:
        return self.reply.workflow


def _runs_here(spec: WorkflowSpec, queue: QueueStart | None, timing: StartTiming | None) -> bool:
    """Whether the starter's session runs the workflow it starts: not one enqueued (its
    queue's), started by name (a worker's that registers the name), or due later (a
    worker claims it when due)."""
    return queue is None and not spec.by_name and timing is None


def begin(
    context: WorkflowContext | None,
    spec: WorkflowSpec,
    args: Any,
    kwargs: Any,
    *,
    session_executor: str = "",
    session_version: str = "",
    queue: QueueStart | None = None,
) -> ops.Op[Started]:
    """Start (or find) the workflow.

    Inside a workflow (`context`) this starts a child, checkpointed as the parent's next
    step: a replay gets the same child back. Outside one it runs under
    `session_executor`, the worker session of this process on the same client ('' if
    none), whose application version is `session_version`. With `queue` the workflow is
    enqueued instead ('' session).
    """
    input = _payloads.encode({"args": list(args), "kwargs": kwargs})
    chosen = next_timeout.get()
    timeout = spec.timeout if chosen is UNSET else chosen
    assert timeout is None or isinstance(timeout, float | int)
    # A start due later (set_start_options) is never run by its starter, even in a process
    # with a worker: it is created ENQUEUED, and a worker claims it (PollWork) when due.
    timing = next_start_timing.get()
    attributes = next_start_attributes.get()
    if context is None:
        # The ID is chosen here, not by the coordinator, so a retried start is idempotent.
        workflow_id = next_workflow_id.get() or str(uuid.uuid4())
        # Under a worker started in this process, the workflow is that worker's: if the
        # process dies, another worker recovers it. A queued one is its queue's to run, one
        # started by name a worker's that registers the name.
        executor_id = session_executor if _runs_here(spec, queue, timing) else ""
        call = _start(
            workflow_id,
            spec,
            input,
            executor_id,
            timeout,
            queue,
            None,
            session_version,
            timing,
            attributes,
        )
        return Started((yield call), executor_id)
    if timing is not None and timing.debounce_key:
        # A debounced start may return another workflow than the one it names, which a
        # parent's replay could not find again (the coordinator refuses it too).
        raise DurableError("set_start_options: debounce is not allowed for a child workflow")
    step_id, recorded = context.next_step(pb.STEP_KIND_START_WORKFLOW, spec.name)
    chosen_id = next_workflow_id.get()
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
    executor_id = context.executor_id if _runs_here(spec, queue, timing) else ""
    call = _start(
        workflow_id,
        spec,
        input,
        executor_id,
        timeout,
        queue,
        context.caller(step_id),
        context.app_version,
        timing,
        attributes,
    )
    return Started((yield call), executor_id)


def run_elsewhere(started: Started) -> bool:
    """Whether a started child is not this caller's to run: it is waiting for a worker,
    finished, or another live session runs it (e.g. a worker recovered it); then the
    caller awaits its result instead of running it."""
    workflow = started.workflow
    return (
        workflow.status != pb.WORKFLOW_STATUS_PENDING or workflow.executor_id != started.executor_id
    )


def restart(started: Started, spec: WorkflowSpec) -> ops.Op[Started]:
    """Start the workflow again, to pick up the records another run here just left."""
    workflow = started.workflow
    call = _start(workflow.workflow_id, spec, workflow.input, started.executor_id, None, None)
    return Started((yield call), started.executor_id)


def workflow_input(workflow: pb.Workflow) -> tuple[list[Any], dict[str, Any]]:
    """The recorded arguments of a workflow started by this SDK."""
    recorded = _payloads.decode(workflow.input)
    try:
        return recorded["args"], recorded["kwargs"]
    except (TypeError, KeyError):
        raise PayloadError(
            f"workflow {workflow.workflow_id!r} input is not {{'args': [...], 'kwargs': {{}}}}"
        ) from None


def run_context(
    started: Started, client: Any, history: list[pb.Step], *, is_async: bool
) -> tuple[WorkflowContext, list[Any], dict[str, Any]]:
    """The context a started workflow's body runs in, and its recorded arguments."""
    workflow = started.workflow
    args, kwargs = workflow_input(workflow)
    context = WorkflowContext(
        workflow.workflow_id,
        client,
        is_async=is_async,
        history={step.step_id: step for step in history},
        executor_id=started.executor_id,
        failed_attempts={
            unfinished.step_id: unfinished.failed_attempts
            for unfinished in started.reply.unfinished_step_attempts
        },
        app_version=workflow.app_version,
        scheduled_time=(
            workflow.scheduled_time.ToDatetime(tzinfo=timezone.utc)
            if workflow.HasField("scheduled_time")
            else None
        ),
    )
    return context, args, kwargs


# Steps per page when a start's history was truncated (the coordinator's maximum).
_HISTORY_PAGE = 1000


def history(started: pb.StartWorkflowResponse) -> ops.Op[list[pb.Step]]:
    """The full step history of a started workflow: what the start returned, then the
    pages after it when it was truncated."""
    steps = list(started.history)
    more = started.history_truncated
    while more:
        after = steps[-1].step_id if steps else 0
        page: pb.ListStepsResponse = yield ops.Call(
            "list_steps", (started.workflow.workflow_id, after, _HISTORY_PAGE)
        )
        steps.extend(page.steps)
        more = page.has_more
    return steps


# How long one AwaitWorkflow call waits before asking again, when the caller waits forever.
AWAIT_CHUNK_SECONDS = 60.0


class Deadline:
    """When a wait for a result ends: `timeout` seconds from now (None: never)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())


def await_result(workflow_id: str, deadline: Deadline) -> ops.Op[Any]:
    """Wait for a workflow's outcome, wherever it runs (see `recorded_result`); raises
    TimeoutError when the deadline passes first."""
    while True:
        left = deadline.left()
        wait = AWAIT_CHUNK_SECONDS if left is None else left
        reply: pb.AwaitWorkflowResponse = yield ops.Call("await_workflow", (workflow_id, wait))
        if not reply.timed_out:
            return recorded_result(reply.workflow)
        if deadline.left() == 0.0:
            raise TimeoutError(f"workflow {workflow_id!r} did not finish in {deadline.timeout}s")


def recorded_result(workflow: pb.Workflow) -> Any:
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
    label = status_of(status).value
    cls = (
        WorkflowCancelledError
        if status == pb.WORKFLOW_STATUS_CANCELLED
        else WorkflowNotPendingError
    )
    raise cls(
        f"workflow {workflow.workflow_id!r} is {label}",
        grpc.StatusCode.FAILED_PRECONDITION,
        {"workflow_id": workflow.workflow_id, "status": label},
    )
