"""The sync face's driver: runs a core operation (`_core.ops`) with blocking calls."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from durable._core.context import StepScope, stepping
from durable._core.ops import Call, Invoke, Op, Outcome, Pause

T = TypeVar("T")


def run(op: Op[T], client: Any, invoke: Callable[[], Any] | None = None) -> T:
    """Drive `op` to its end: each Call through `client` (a durable.Client), each Pause
    with time.sleep, each Invoke by calling `invoke` inside a step."""
    reply: Any = None
    try:
        while True:
            try:
                effect = op.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(effect, Call):
                reply = getattr(client, effect.method)(*effect.args, **effect.kwargs)
            elif isinstance(effect, Pause):
                time.sleep(effect.seconds)
                reply = None
            else:
                assert isinstance(effect, Invoke) and invoke is not None
                reply = attempt(invoke, effect.scope, effect.timeout)
    finally:
        op.close()


def attempt(
    invoke: Callable[[], Any], scope: StepScope | None = None, timeout: float | None = None
) -> Outcome:
    """Run a step's function once, inside step `scope`: what it returned or raised.

    With a `timeout`, the function runs in a thread of its own (a daemon thread, so it
    never holds up the process's exit) and this thread waits for it at most `timeout`
    seconds: past that, the outcome is `timed_out` and the attempt's thread is abandoned.
    Python cannot stop a thread, so it runs on until the function returns; what it returns
    or raises then goes nowhere (no one reads its future again), so it is never recorded.
    """
    if timeout is None:
        return _outcome(invoke, scope)
    # Run in a copy of this thread's context: the function sees its workflow and step.
    call = functools.partial(contextvars.copy_context().run, _outcome, invoke, scope)
    running = in_daemon_thread(call, thread_name(scope))
    try:
        return running.result(timeout)
    except concurrent.futures.TimeoutError:
        return Outcome(timed_out=True)


def _outcome(invoke: Callable[[], Any], scope: StepScope | None) -> Outcome:
    with stepping(scope):
        try:
            return Outcome(value=invoke())
        except Exception as exc:
            return Outcome(error=exc)


def in_daemon_thread(call: Callable[[], T], name: str) -> concurrent.futures.Future[T]:
    """Start `call()` in a new daemon thread; the future gets its result (or whatever it
    raises, BaseExceptions included). A daemon thread, unlike a pool's, is not waited for
    when the interpreter exits, so an abandoned attempt that hangs cannot hold a stopping
    worker process up."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except BaseException as exc:  # handed to whoever waits (a step's Crash, SystemExit)
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def thread_name(scope: StepScope | None) -> str:
    """The name of the thread a timed step attempt runs in, for thread dumps and logs."""
    if scope is None or not scope.workflow_id:
        return "durable-step"
    return f"durable-step-{scope.workflow_id}-{scope.step_id}-attempt-{scope.attempt}"
