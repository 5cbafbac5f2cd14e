"""Every durable operation, written once as a generator of effects.

An operation decides everything a workflow step needs — its position in the replay, the
request to send, what a reply means, when to retry — and leaves the doing to the face that
drives it: it yields an effect and receives the effect's result.

    Call(method, ...)   call the run's client: `client.<method>(...)`, its reply sent back
    Pause(seconds)      wait this long (time.sleep or asyncio.sleep)
    Invoke(scope, timeout)
                        run the step's own function once, as attempt `scope`, for at most
                        `timeout` seconds (None: no limit); an `Outcome` is sent back

The sync face drives operations with blocking calls (`durable._drive`), the async face
with awaits (`durable._aio.drive`). An operation claims its step position before its first
yield, so a face that advances it to its first effect at call time numbers steps in call
order (see `WorkflowContext.next_step`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from durable import _payloads
from durable._core.context import StepScope, WorkflowContext
from durable._core.durations import Seconds, seconds
from durable._step_retry import StepRetry
from durable.errors import CoordinatorError, NotInWorkflowError, PayloadError, StepTimeoutError
from durable.v1 import coordinator_pb2 as pb

T = TypeVar("T")

# The longest sleep the coordinator records (a year).
MAX_SLEEP_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Call:
    """Call the run's client: `client.<method>(*args, **kwargs)`; the reply is sent back."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait `seconds` before going on."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Invoke:
    """Run the step's function once, marked as inside step `scope` (its idempotency key
    comes from there); send back its Outcome.

    With a `timeout`, stop waiting for the function after that many seconds and send back
    `Outcome(timed_out=True)`: the async face cancels the attempt's task; the sync face
    leaves the attempt's thread to run on, and never sends back what it returns later.
    """

    scope: StepScope
    timeout: float | None = None


Effect = Call | Pause | Invoke
Op = Generator[Effect, Any, T]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a step's function or a workflow's body did: returned `value`, or raised `error`;
    or, for a step attempt, did not finish within its timeout (`timed_out`)."""

    value: Any = None
    error: Exception | None = None
    timed_out: bool = False


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


# --- steps --------------------------------------------------------------------------------

# The longest step timeout (a year), as for sleeps.
MAX_STEP_TIMEOUT_SECONDS = MAX_SLEEP_SECONDS


def check_step_timeout(timeout: Seconds | None) -> float | None:
    """A step's `timeout` (seconds or a timedelta; None: no timeout) in seconds.

    Raises ValueError naming `timeout` unless it is more than 0 and at most a year, and
    TypeError for what is not a duration.
    """
    if timeout is None:
        return None
    value = seconds(timeout)
    if not (math.isfinite(value) and 0 < value <= MAX_STEP_TIMEOUT_SECONDS):
        raise ValueError(
            f"timeout must be more than 0 and at most {MAX_STEP_TIMEOUT_SECONDS:.0f} seconds"
            f" (a year), not {timeout!r}"
        )
    return value


def timed_out(name: str, attempt: int, timeout: float | None) -> StepTimeoutError:
    """The error recorded for attempt `attempt` of step `name` that ran past `timeout`."""
    return StepTimeoutError(
        f"step {name!r} attempt {attempt} did not finish within its timeout of {timeout:g}s"
    )


def step(
    context: WorkflowContext, name: str, retry: StepRetry | None, timeout: float | None = None
) -> Op[Any]:
    """The step's output (or its error raised), from its record or from running it now,
    each attempt for at most `timeout` seconds (None: no limit)."""
    step_id, recorded = context.next_step(pb.STEP_KIND_STEP, name)
    if recorded is None:
        recorded = yield from _run_new_step(context, step_id, name, retry, timeout)
    if recorded.HasField("error"):
        raise _payloads.exception(recorded.error)
    return _payloads.decode(recorded.output)


def _run_new_step(
    context: WorkflowContext,
    step_id: int,
    name: str,
    retry: StepRetry | None,
    timeout: float | None,
) -> Op[pb.Step]:
    """Run a step that has no record yet (retrying as `retry` says) and record its outcome.

    Returns the step as recorded, which is another run's outcome if one recorded first; a
    fresh exception of this run is raised as itself.

    An attempt that did not finish within `timeout` failed with a StepTimeoutError, made
    here: it is recorded and retried as any error (when `retry.retry_on` covers it), and
    when it is the last attempt's, it is the step's error. Only the Outcome the face sends
    back is ever recorded, so a timed-out attempt's late result has no way in.
    """
    # Attempts continue after those a run before a recovery recorded, so the retry policy
    # counts every attempt and an attempt number is never recorded twice.
    attempt = context.failed_attempts.pop(step_id, 0) + 1
    while True:
        started = now()
        outcome: Outcome = yield Invoke(StepScope(context.workflow_id, step_id, attempt), timeout)
        raised = timed_out(name, attempt, timeout) if outcome.timed_out else outcome.error
        if raised is None or retry is None or not retry.retries(raised, attempt):
            break
        failed = pb.RecordStepAttemptRequest(
            workflow_id=context.workflow_id,
            step_id=step_id,
            name=name,
            attempt=attempt,
            error=_payloads.failure(raised),
            start_time=started,
            end_time=now(),
            executor_id=context.executor_id,
        )
        yield Call("record_step_attempt", (failed,))
        yield Pause(retry.delay(attempt))
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
        request.output.CopyFrom(_payloads.encode(outcome.value))
    reply: pb.RunStepResponse = yield Call("run_step", (request,))
    # Recorded already: by an earlier run of this executor (the coordinator refuses it to
    # any other with NOT_OWNER), so the record is the outcome, not this run's.
    if raised is not None and not reply.already_recorded:
        raise raised
    return reply.step


# --- patches ------------------------------------------------------------------------------

_PATCH_TRUE = pb.Payload(encoding="json", data=b"true")


def patched(context: WorkflowContext, name: str) -> Op[bool]:
    """Whether the run takes the new branch of patch `name`: True for a run that reaches
    this point on code that has the patch (a marker is recorded at this position), False
    for one that recorded another operation here on older code (nothing is consumed, so
    the old branch replays that operation)."""
    recorded = context.peek()
    if recorded is not None:
        if (recorded.kind, recorded.name) != (pb.STEP_KIND_PATCH, name):
            return False
        context.next_step(pb.STEP_KIND_PATCH, name)
        return True
    step_id, _ = context.next_step(pb.STEP_KIND_PATCH, name)
    request = pb.RunStepRequest(
        workflow_id=context.workflow_id,
        step_id=step_id,
        name=name,
        kind=pb.STEP_KIND_PATCH,
        output=_PATCH_TRUE,
        executor_id=context.executor_id,
    )
    yield Call("run_step", (request,))
    return True


def deprecate_patch(context: WorkflowContext, name: str) -> bool:
    """The clean-up of patch `name` once no run of the old code is left: always the new
    branch; a marker an earlier run recorded here is passed over, none is recorded."""
    recorded = context.peek()
    if recorded is not None and (recorded.kind, recorded.name) == (pb.STEP_KIND_PATCH, name):
        context.skip()
    return True


# --- events -------------------------------------------------------------------------------


def set_event(context: WorkflowContext, key: str, value: Any) -> Op[None]:
    """Publish `key` = `value`, checkpointed: a replay does not set an older value again."""
    step_id, recorded = context.next_step(pb.STEP_KIND_SET_EVENT, key)
    if recorded is not None:
        return
    request = pb.SetEventRequest(
        workflow_id=context.workflow_id,
        step_id=step_id,
        key=key,
        value=_payloads.encode(value),
        executor_id=context.executor_id,
    )
    yield Call("set_event", (request,))


# --- search attributes --------------------------------------------------------------------

# The name every SET_ATTRIBUTES step is recorded under (the coordinator's, see
# coordinator/store/attributes.py).
SET_ATTRIBUTES_STEP = "attributes"


def set_attributes(context: WorkflowContext, attributes: dict[str, str]) -> Op[None]:
    """Merge search `attributes` into the workflow's ("" removes a key), checkpointed as a
    step: a replay sets nothing again (the coordinator keeps what the first run set)."""
    if not attributes:
        raise ValueError("set_attributes: give at least one attribute")
    step_id, recorded = context.next_step(pb.STEP_KIND_SET_ATTRIBUTES, SET_ATTRIBUTES_STEP)
    if recorded is not None:
        return
    request = pb.SetAttributesRequest(
        workflow_id=context.workflow_id,
        step_id=step_id,
        attributes=attributes,
        executor_id=context.executor_id,
    )
    yield Call("set_attributes", (request,))


def read_event(context: WorkflowContext, workflow_id: str, key: str, timeout: float) -> Op[Any]:
    """A get_event from a workflow, checkpointed as its step: a replay gets the value read
    the first time (or None) back at once."""
    step_id, recorded = context.next_step(pb.STEP_KIND_GET_EVENT, key)
    if recorded is not None:
        return None if recorded.timed_out else _payloads.decode(recorded.output)
    event: pb.EventValue | None = yield Call(
        "first_event", (workflow_id, key, timeout, context.caller(step_id))
    )
    return None if event is None else _payloads.decode(event.value)


def not_in_step(operation: str) -> NotInWorkflowError:
    return NotInWorkflowError(
        f"{operation} cannot be called inside a step; call it from the workflow"
    )


# --- messages -----------------------------------------------------------------------------


def topic_name(topic: str | None) -> str:
    if topic is not None and not isinstance(topic, str):
        raise TypeError(f"topic must be a str or None, not {type(topic).__name__}")
    return topic or ""


def send(
    context: WorkflowContext | None,
    destination_id: str,
    message: Any,
    topic: str | None,
    idempotency_key: str | None,
) -> Op[None]:
    """Send a message; from a workflow (`context`) checkpointed as its step."""
    request = pb.SendRequest(
        destination_workflow_id=destination_id,
        topic=topic_name(topic),
        message=_payloads.encode(message),
        idempotency_key=idempotency_key or "",
    )
    if context is None:
        # A key of this call's own, so the SDK's retries never deliver twice.
        request.idempotency_key = request.idempotency_key or str(uuid.uuid4())
        yield Call("send", (request,))
        return
    step_id, recorded = context.next_step(pb.STEP_KIND_SEND, request.topic)
    if recorded is not None:
        return
    request.caller.CopyFrom(context.caller(step_id))
    yield Call("send", (request,))


def check_wait_seconds(timeout: float) -> float:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be a finite number of seconds >= 0, not {timeout!r}")
    return timeout


def recv(context: WorkflowContext, topic: str | None, timeout: float) -> Op[Any]:
    """The oldest message on `topic` (None after `timeout`), checkpointed as a step."""
    name = topic_name(topic)
    step_id, recorded = context.next_step(pb.STEP_KIND_RECV, name)
    if recorded is None:
        request = pb.RecvRequest(
            workflow_id=context.workflow_id,
            step_id=step_id,
            topic=name,
            timeout=duration(timeout),
            executor_id=context.executor_id,
        )
        reply: pb.RecvResponse = yield Call("recv", (request,))
        recorded = reply.step
    if recorded.timed_out:
        return None
    return _payloads.decode(recorded.output)


# --- durable sleep ------------------------------------------------------------------------


def check_sleep_seconds(seconds: float) -> float:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a finite number, not {seconds!r}")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be 0 to {MAX_SLEEP_SECONDS:.0f}, not {seconds!r}")
    return seconds


def sleep(context: WorkflowContext, seconds: float) -> Op[None]:
    """Sleep with the wake-up time recorded by the first call: a resumed workflow sleeps
    only until then (not at all once it passed)."""
    step_id, recorded = context.next_step(pb.STEP_KIND_SLEEP, "sleep")
    if recorded is not None and recorded.deadline.ToNanoseconds() <= time.time_ns():
        return  # woke up already, by this machine's clock: no need to ask
    # The coordinator says what is left, by its clock: the one the wake-up time was fixed by.
    request = pb.SleepRequest(
        workflow_id=context.workflow_id,
        step_id=step_id,
        duration=duration(seconds),
        executor_id=context.executor_id,
    )
    reply: pb.SleepResponse = yield Call("sleep", (request,))
    yield Pause(reply.remaining.ToNanoseconds() / 1e9)


# --- finishing a run ----------------------------------------------------------------------


def finish(context: WorkflowContext, outcome: Outcome) -> Op[pb.FinishWorkflowResponse]:
    """Record the run's outcome (its body's value or error) as the workflow's.

    Raises the body's own error when this call recorded it (another executor's finish is
    refused by the coordinator: WorkflowOwnershipLostError). A value that is not JSON becomes the
    workflow's error (PayloadError).
    """
    request = pb.FinishWorkflowRequest(
        workflow_id=context.workflow_id, executor_id=context.executor_id
    )
    raised = outcome.error
    if raised is None:
        try:
            request.output.CopyFrom(_payloads.encode(outcome.value))
        except PayloadError as exc:
            if _payloads.unreadable(exc):
                raise  # this process's codec failed: not the workflow's outcome
            raised = exc
    if raised is not None:
        request.error.CopyFrom(_payloads.failure(raised))
    reply: pb.FinishWorkflowResponse = yield Call("finish_workflow", (request,))
    if raised is not None and not reply.already_finished:
        raise raised
    return reply


def body_outcome_error(error: Exception) -> Exception | None:
    """The error a workflow body raised, as its recorded outcome; None for one that is not
    the workflow's own (the coordinator is unreachable, the code no longer replays, the
    workflow was cancelled, or another worker runs it now; or a payload this process has
    no codec for): that one is raised as it is, leaving the workflow for whoever runs it
    next to settle."""
    return None if isinstance(error, CoordinatorError) or _payloads.unreadable(error) else error
