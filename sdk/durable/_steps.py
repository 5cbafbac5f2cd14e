"""Steps: the decorator, for plain and `async def` functions. The step itself (replaying
its record, or running it with retries and recording its outcome) is `_core.ops.step`."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar, overload

from durable import _drive
from durable._aio import drive as _aio_drive
from durable._core import ops
from durable._core.context import current, in_step, next_step_timeout, step_scope, step_timeout
from durable._core.durations import Seconds
from durable._step_retry import StepRetry
from durable.errors import DurableError, NotInWorkflowError

P = ParamSpec("P")
R = TypeVar("R")


@overload
def step(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def step(
    *, name: str | None = None, retry: StepRetry | None = None, timeout: Seconds | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retry: StepRetry | None = None,
    timeout: Seconds | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a step: inside a workflow its outcome is recorded once, and a
    resumed workflow gets the recorded output (or error) back without running it again.

    Outputs must be JSON-serializable; the workflow sees them as JSON reads them back
    (a tuple comes back as a list), on the first run as on replays. `retry` (a
    `StepRetry`) retries the function when it raises, recording each failed attempt.
    `timeout` (seconds or a timedelta, more than 0 and at most a year) limits each
    attempt: one still running then is abandoned and fails with durable.StepTimeoutError,
    retried as `retry` says (docs/step-timeouts.md; `set_step_timeout` overrides it per
    call). Outside a workflow, or inside another step, the function simply runs (once,
    with no timeout).

    An `async def` step is awaited in an `async def` workflow; it takes its step position
    when it is called, so `asyncio.gather(a(), b())` replays deterministically. A plain
    step runs in an async workflow through `await durable.aio.run_step(fn, ...)`.
    """
    if retry is not None and not isinstance(retry, StepRetry):
        raise TypeError(f"retry must be a durable.StepRetry, not {type(retry).__name__}")
    limit = ops.check_step_timeout(timeout)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if not callable(fn):
            raise TypeError(f"@durable.step decorates a function, not {fn!r}")
        step_name = name or fn.__qualname__
        if inspect.iscoroutinefunction(fn):
            wrapped: Callable[P, R] = _aio_drive.async_step(fn, step_name, retry, limit)
            return wrapped

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            context = current()
            if context is None or in_step():
                return fn(*args, **kwargs)
            if context.is_async:
                raise DurableError(
                    f"step {step_name!r} is a plain function called in an async workflow,"
                    f" where it would block the event loop: use"
                    f" `await durable.aio.run_step({fn.__name__}, ...)` (it runs in a"
                    " thread pool), or make the step `async def`"
                )
            op = ops.step(context, step_name, retry, step_timeout(limit))
            result: R = _drive.run(op, context.client, lambda: fn(*args, **kwargs))
            return result

        run.__durable_step__ = (step_name, retry, limit)  # type: ignore[attr-defined]
        return run

    return decorate(fn) if fn is not None else decorate


@contextlib.contextmanager
def set_step_timeout(seconds: Seconds | None) -> Iterator[None]:
    """Run the steps *called* inside this block with this timeout per attempt (None: no
    timeout) instead of their decorator's `timeout`; on both faces, e.g.

        with durable.set_step_timeout(5):
            charge(order)                                  # a sync workflow
            await durable.aio.run_step(charge, order)      # an async one
            await fetch(url)                               # an `async def` step

    An `async def` step takes its timeout when it is called (as its step position), so
    the coroutine must be made inside the block. Validated as the decorator's `timeout`
    (ValueError unless more than 0 and at most a year). A workflow body run inline from
    the block (a child workflow) does not inherit it.
    """
    token = next_step_timeout.set((ops.check_step_timeout(seconds),))
    try:
        yield
    finally:
        next_step_timeout.reset(token)


def step_idempotency_key() -> str:
    """A key for the running step, the same on every retry and after recovery (the
    workflow ID and the step's position): pass it to an external API that deduplicates
    requests (e.g. an `Idempotency-Key` header), so a step that runs twice charges once."""
    scope = step_scope()
    if scope is None or not scope.workflow_id:
        raise NotInWorkflowError("step_idempotency_key can only be called inside a step")
    return scope.idempotency_key
