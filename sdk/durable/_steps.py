"""Steps: the decorator, and running a step inside a workflow (replaying its record, or
running it with retries and recording its outcome)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from google.protobuf import timestamp_pb2

from durable import _context, _payloads
from durable._step_retry import StepRetry
from durable.errors import PayloadError
from durable.v1 import coordinator_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def _attempt(
    context: _context.WorkflowContext, call: Callable[[], Any]
) -> tuple[pb.Payload | None, Exception | None]:
    """Run the step's function once: its encoded output, or the exception it raised."""
    context.in_step = True
    try:
        return _payloads.encode(call()), None
    except PayloadError:
        raise
    except Exception as exc:
        return None, exc
    finally:
        context.in_step = False


def _run_new_step(
    context: _context.WorkflowContext,
    step_id: int,
    name: str,
    call: Callable[[], Any],
    retry: StepRetry | None,
) -> pb.Step:
    """Run a step that has no record yet (retrying as `retry` says) and record its outcome.

    Returns the step as recorded, which is another run's outcome if one recorded first; a
    fresh exception of this run is raised as itself.
    """
    attempt = 1
    while True:
        started = _now()
        output, raised = _attempt(context, call)
        if raised is None or retry is None or not retry.retries(raised, attempt):
            break
        context.client.record_step_attempt(
            pb.RecordStepAttemptRequest(
                workflow_id=context.workflow_id,
                step_id=step_id,
                name=name,
                attempt=attempt,
                error=_payloads.failure(raised),
                start_time=started,
                end_time=_now(),
                executor_id=context.executor_id,
            )
        )
        time.sleep(retry.delay(attempt))
        attempt += 1
    request = pb.RunStepRequest(
        workflow_id=context.workflow_id,
        step_id=step_id,
        name=name,
        executor_id=context.executor_id,
        start_time=started,
        attempts=attempt,
    )
    if raised is not None:
        request.error.CopyFrom(_payloads.failure(raised))
    else:
        assert output is not None
        request.output.CopyFrom(output)
    reply = context.client.run_step(request)
    if reply.already_recorded:
        context.check_owner()
    elif raised is not None:
        raise raised
    return reply.step


def run_step(
    context: _context.WorkflowContext,
    name: str,
    call: Callable[[], Any],
    retry: StepRetry | None = None,
) -> Any:
    """The step's output (or its error raised), from its record or from running it now."""
    step_id, recorded = context.next_step(pb.STEP_KIND_STEP, name)
    if recorded is None:
        recorded = _run_new_step(context, step_id, name, call, retry)
    if recorded.HasField("error"):
        raise _payloads.exception(recorded.error)
    return _payloads.decode(recorded.output)


@overload
def step(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def step(
    *, name: str | None = None, retry: StepRetry | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retry: StepRetry | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function as a step: inside a workflow its outcome is recorded once, and a
    resumed workflow gets the recorded output (or error) back without running it again.

    Outputs must be JSON-serializable; the workflow sees them as JSON reads them back
    (a tuple comes back as a list), on the first run as on replays. `retry` (a
    `StepRetry`) retries the function when it raises, recording each failed attempt.
    Outside a workflow, or inside another step, the function simply runs (once).
    """
    if retry is not None and not isinstance(retry, StepRetry):
        raise TypeError(f"retry must be a durable.StepRetry, not {type(retry).__name__}")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        step_name = name or fn.__qualname__

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            context = _context.current()
            if context is None or context.in_step:
                return fn(*args, **kwargs)
            result: R = run_step(context, step_name, lambda: fn(*args, **kwargs), retry)
            return result

        return run

    return decorate(fn) if fn is not None else decorate
