"""The async face's driver: runs a core operation (`durable._core.ops`) with awaits.

An operation is advanced to its first effect when it is *called*, and the rest runs when
the returned awaitable is awaited: so operations take their step positions in call order,
and `asyncio.gather(step_a(), step_b())` numbers a before b on every run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from durable._core import ops
from durable._core.context import StepScope, current, in_step, step_timeout, stepping
from durable._core.ops import Call, Effect, Invoke, Op, Outcome, Pause
from durable._step_retry import StepRetry
from durable.errors import DurableError

T = TypeVar("T")

Invoker = Callable[[], Awaitable[Any]]


def start(op: Op[T], client: Any, invoke: Invoker | None = None) -> Coroutine[Any, Any, T]:
    """Advance `op` to its first effect now; the coroutine returned drives the rest.

    What the first part raises (a NonDeterminismError, a replayed step's recorded error)
    is raised when the coroutine is awaited, as any outcome of the operation is.
    """
    try:
        first = op.send(None)
    except StopIteration as done:
        return _done(done.value)
    except Exception as exc:
        return _failed(exc)
    return _drive(op, first, client, invoke)


async def run(op: Op[T], client: Any, invoke: Invoker | None = None) -> T:
    """Drive `op` from its start to its end."""
    return await start(op, client, invoke)


async def _done(value: T) -> T:
    return value


async def _failed(error: Exception) -> Any:
    raise error


async def _drive(op: Op[T], effect: Effect, client: Any, invoke: Invoker | None) -> T:
    try:
        while True:
            reply: Any = None
            if isinstance(effect, Call):
                reply = await getattr(client, effect.method)(*effect.args, **effect.kwargs)
            elif isinstance(effect, Pause):
                await asyncio.sleep(effect.seconds)
            else:
                assert isinstance(effect, Invoke) and invoke is not None
                reply = await attempt(invoke, effect.scope, effect.timeout)
            try:
                effect = op.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
    finally:
        op.close()


async def attempt(
    invoke: Invoker, scope: StepScope | None = None, timeout: float | None = None
) -> Outcome:
    """Run a step's function once, inside step `scope`: what it returned or raised. A
    cancellation is not an outcome: it goes through, and nothing is recorded.

    With a `timeout`, the attempt runs as a task of its own, cancelled once `timeout`
    seconds have passed; when it has ended (its CancelledError handled), the outcome is
    `timed_out`, whatever it returned or raised. A cancellation of the workflow's own task
    (a worker stopping) is still no outcome: it cancels the attempt too and goes through.
    """
    with stepping(scope):
        if timeout is None:
            return await _outcome(invoke)
        # The task runs in a copy of this context: it sees its workflow and its step.
        task = asyncio.get_running_loop().create_task(_outcome(invoke), name=task_name(scope))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        await _ended(task)
        raise
    if task in done:
        return task.result()
    task.cancel()
    await _ended(task)
    return Outcome(timed_out=True)


async def _outcome(invoke: Invoker) -> Outcome:
    try:
        return Outcome(value=await invoke())
    except Exception as exc:
        return Outcome(error=exc)


async def _ended(task: asyncio.Task[Outcome]) -> None:
    """Wait for a cancelled attempt's task to end (its `finally` blocks run before the
    next attempt starts); what it returned or raised is dropped."""
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # read, so asyncio does not log it as never retrieved


def task_name(scope: StepScope | None) -> str:
    if scope is None or not scope.workflow_id:
        return "durable-step"
    return f"durable-step-{scope.workflow_id}-{scope.step_id}-attempt-{scope.attempt}"


def async_step(
    fn: Callable[..., Any], name: str, retry: StepRetry | None, timeout: float | None = None
) -> Any:
    """The `@durable.step` wrapper of an `async def` function."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        context = current()
        if context is None or in_step():
            result: Coroutine[Any, Any, Any] = fn(*args, **kwargs)
            return result
        if not context.is_async:
            raise DurableError(
                f"step {name!r} is async def, called in a sync workflow: make the workflow"
                " `async def` (and await the step), or make the step a plain function"
            )
        op = ops.step(context, name, retry, step_timeout(timeout))
        return start(op, context.client, lambda: fn(*args, **kwargs))

    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(call)
    call.__durable_step__ = (name, retry, timeout)  # type: ignore[attr-defined]
    return call


def step_of(fn: Callable[..., Any]) -> tuple[str, StepRetry | None, float | None]:
    """The name, retry policy and timeout `@durable.step` gave `fn`; raises DurableError
    for a function that is not a step."""
    marked = getattr(fn, "__durable_step__", None)
    if marked is None:
        raise DurableError(f"{fn!r} is not a step: decorate it with @durable.step")
    name, retry, timeout = marked
    return name, retry, timeout
