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
from durable._core.context import StepScope, current, in_step, stepping
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
                reply = await attempt(invoke, effect.scope)
            try:
                effect = op.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
    finally:
        op.close()


async def attempt(invoke: Invoker, scope: StepScope | None = None) -> Outcome:
    """Run a step's function once, inside step `scope`: what it returned or raised. A
    cancellation is not an outcome: it goes through, and nothing is recorded."""
    with stepping(scope):
        try:
            return Outcome(value=await invoke())
        except Exception as exc:
            return Outcome(error=exc)


def async_step(fn: Callable[..., Any], name: str, retry: StepRetry | None) -> Any:
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
        op = ops.step(context, name, retry)
        return start(op, context.client, lambda: fn(*args, **kwargs))

    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(call)
    call.__durable_step__ = (name, retry)  # type: ignore[attr-defined]
    return call


def step_of(fn: Callable[..., Any]) -> tuple[str, StepRetry | None]:
    """The name and retry policy `@durable.step` gave `fn`; raises DurableError for a
    function that is not a step."""
    marked = getattr(fn, "__durable_step__", None)
    if marked is None:
        raise DurableError(f"{fn!r} is not a step: decorate it with @durable.step")
    name, retry = marked
    return name, retry
