"""The sync face's driver: runs a core operation (`_core.ops`) with blocking calls."""

from __future__ import annotations

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
                reply = attempt(invoke, effect.scope)
    finally:
        op.close()


def attempt(invoke: Callable[[], Any], scope: StepScope | None = None) -> Outcome:
    """Run a step's function once, inside step `scope`: what it returned or raised."""
    with stepping(scope):
        try:
            return Outcome(value=invoke())
        except Exception as exc:
            return Outcome(error=exc)
