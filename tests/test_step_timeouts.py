"""Step timeouts against a real coordinator: an attempt that runs past its step's `timeout`
is abandoned, recorded as a failed attempt with durable.StepTimeoutError and retried per
the step's StepRetry; once the attempts run out the workflow catches StepTimeoutError (and
a replay raises it again from the record). On the sync face the abandoned attempt's daemon
thread runs on and its late result is never recorded; on the async face the attempt's task
is cancelled, while a cancellation of the workflow itself (a worker stopping) records
nothing. Attempt numbers continue across a recovery, timed-out attempts included.

Hung steps block on a gate (a threading.Event, bounded by WAIT) that each test opens at its
end, so no abandoned thread outlives its test.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from google.protobuf.duration_pb2 import Duration

import durable
import durable.aio
from durable import _payloads
from durable._aio.client import default_client
from durable._core.context import step_scope
from durable.v1 import coordinator_pb2 as pb
from tests.support import PROMPT, Coordinator, Stub, eventually, new_id, payload

T = TypeVar("T")

WAIT = 30.0
LEASE = 1.0
TIMED_OUT = "durable.StepTimeoutError"
QUICK = durable.StepRetry(max_attempts=3, initial_backoff_seconds=0.01, jitter=0)

# Calls of each key's step body in this process.
calls: Counter[str] = Counter()
# Hung attempts wait on their key's gate; `finished` is set when one returns at last.
gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
finished: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# Keys whose async step saw its CancelledError; keys whose held step started.
cancelled: set[str] = set()
started: set[str] = set()
# Keys whose workflow raises Crash after its step (standing for the process dying).
crash_after: set[str] = set()


class Crash(BaseException):
    """Stands for the process dying: a BaseException, so nothing records it."""


@pytest.fixture(autouse=True)
def open_gates() -> Iterator[None]:
    """Every gate is opened at the end of each test: no hung step outlives it."""
    yield
    for gate in list(gates.values()):
        gate.set()


@pytest.fixture(scope="module")
def aio(coordinator: Coordinator) -> None:
    durable.aio.configure(coordinator.address)


def arun(main: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
    """`asyncio.run(main)`, bounded, closing the loop's default durable.aio client after."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main, timeout)
        finally:
            await default_client().close()

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s: {check}"
        await asyncio.sleep(0.01)


def hang_first(key: str) -> str:
    """The first call for `key` hangs until its gate opens, then returns late; later
    calls return at once."""
    calls[key] += 1
    number = calls[key]
    if number == 1:
        gates[key].wait(WAIT)
        finished[key].set()
        return "the late result of the abandoned attempt"
    return f"call {number}"


def attempt_thread(key: str, attempt: int = 1) -> threading.Thread:
    (thread,) = [
        t for t in threading.enumerate() if t.name == f"durable-step-{key}-1-attempt-{attempt}"
    ]
    return thread


def failed(step: durable.StepInfo) -> list[tuple[int, str]]:
    return [(a.attempt, a.error.type) for a in step.failed_attempts]


# --- the sync face --------------------------------------------------------------------------


@durable.step(name="timeouts.hangs_first", timeout=0.5, retry=QUICK)
def hangs_first(key: str) -> str:
    return hang_first(key)


@durable.workflow(name="timeouts.sync.retried")
def retried(key: str) -> str:
    return hangs_first(key)


@pytest.mark.usefixtures("sdk")
def test_a_hung_attempt_times_out_its_retry_succeeds_and_its_late_result_is_never_recorded() -> (
    None
):
    key = new_id("hung")
    with durable.set_workflow_id(key):
        assert durable.start_workflow(retried, key).result(timeout=WAIT) == "call 2"
    (step,) = durable.list_steps(key)
    assert step.attempts == 2 and step.output == "call 2" and step.error is None
    assert failed(step) == [(1, TIMED_OUT)]
    assert step.failed_attempts[0].error.message == (
        "step 'timeouts.hangs_first' attempt 1 did not finish within its timeout of 0.5s"
    )

    # Attempt 1 still runs, abandoned, in a daemon thread: it cannot hold the exit up.
    thread = attempt_thread(key)
    assert thread.daemon and thread.is_alive() and not finished[key].is_set()
    gates[key].set()
    eventually(finished[key].is_set, timeout=PROMPT)
    thread.join(PROMPT)
    assert not thread.is_alive()
    # It returned, and that went nowhere: the record is still the retry's.
    assert durable.list_steps(key) == [step]
    assert durable.retrieve_workflow(key).result(timeout=WAIT) == "call 2"


@durable.step(
    name="timeouts.always_hangs",
    retry=durable.StepRetry(max_attempts=2, initial_backoff_seconds=0.01, jitter=0),
)
def always_hangs(key: str) -> str:
    calls[key] += 1
    gates[key].wait(WAIT)
    return "never recorded"


@durable.workflow(name="timeouts.sync.gives_up")
def gives_up(key: str) -> str:
    try:
        with durable.set_step_timeout(timedelta(milliseconds=200)):
            always_hangs(key)
        caught = "no error"
    except durable.StepTimeoutError as exc:
        caught = f"{type(exc).__name__}: {exc}"
    if key in crash_after:
        raise Crash(key)
    return caught


@pytest.mark.usefixtures("sdk")
def test_when_every_attempt_times_out_the_workflow_catches_the_recorded_step_timeout() -> None:
    key = new_id("gives-up")
    crash_after.add(key)
    with durable.set_workflow_id(key), pytest.raises(Crash):
        durable.start_workflow(gives_up, key).result(timeout=WAIT)
    assert calls[key] == 2
    (step,) = durable.list_steps(key)
    assert step.attempts == 2 and failed(step) == [(1, TIMED_OUT)]
    assert step.error is not None and step.error.type == TIMED_OUT

    # The replay raises the StepTimeoutError from the record; the step does not run again.
    crash_after.discard(key)
    with durable.set_workflow_id(key):
        caught = durable.start_workflow(gives_up, key).result(timeout=WAIT)
    assert caught == (
        "StepTimeoutError: step 'timeouts.always_hangs' attempt 2 did not finish within its"
        " timeout of 0.2s"
    )
    assert calls[key] == 2


@durable.step(
    name="timeouts.not_retried", timeout=0.2, retry=durable.StepRetry(retry_on=(KeyError,))
)
def not_retried(key: str) -> str:
    calls[key] += 1
    gates[key].wait(WAIT)
    return "never recorded"


@durable.workflow(name="timeouts.sync.not_retried")
def not_retried_workflow(key: str) -> str:
    try:
        return not_retried(key)
    except TimeoutError as exc:  # a StepTimeoutError is a TimeoutError too
        return type(exc).__name__


@pytest.mark.usefixtures("sdk")
def test_a_timeout_is_not_retried_when_retry_on_leaves_it_out() -> None:
    key = new_id("not-retried")
    with durable.set_workflow_id(key):
        assert durable.start_workflow(not_retried_workflow, key).result(WAIT) == "StepTimeoutError"
    (step,) = durable.list_steps(key)
    assert (step.attempts, failed(step), calls[key]) == (1, [], 1)
    assert step.error is not None and step.error.type == TIMED_OUT


# --- the async face -------------------------------------------------------------------------


@durable.step(name="timeouts.async.hangs_first", timeout=0.5, retry=QUICK)
async def ahangs_first(key: str) -> str:
    calls[key] += 1
    if calls[key] == 1:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.add(key)
            raise
    return f"call {calls[key]}"


@durable.workflow(name="timeouts.async.retried")
async def aretried(key: str) -> str:
    return await ahangs_first(key)


def test_an_async_attempt_is_cancelled_at_its_timeout_and_retried(aio: None) -> None:
    key = new_id("async-hung")

    async def main() -> tuple[str, list[durable.StepInfo]]:
        with durable.aio.set_workflow_id(key):
            handle = await durable.aio.start_workflow(aretried, key)
        return await handle.result(timeout=WAIT), await durable.aio.list_steps(key)

    result, (step,) = arun(main())
    assert result == "call 2" and key in cancelled  # the coroutine saw its CancelledError
    assert step.attempts == 2 and step.output == "call 2" and failed(step) == [(1, TIMED_OUT)]


@durable.step(name="timeouts.plain_hangs_first", retry=QUICK)
def plain_hangs_first(key: str) -> str:
    return hang_first(key)


@durable.workflow(name="timeouts.async.run_step")
async def runs_plain_step(key: str) -> str:
    with durable.aio.set_step_timeout(0.5):
        return await durable.aio.run_step(plain_hangs_first, key)


def test_a_plain_step_of_an_async_workflow_is_abandoned_in_its_daemon_thread(
    aio: None, sdk: None
) -> None:
    key = new_id("run-step")

    async def main() -> str:
        with durable.aio.set_workflow_id(key):
            handle = await durable.aio.start_workflow(runs_plain_step, key)
        result: str = await handle.result(timeout=WAIT)
        return result

    assert arun(main()) == "call 2"
    (step,) = durable.list_steps(key)
    assert step.attempts == 2 and step.output == "call 2" and failed(step) == [(1, TIMED_OUT)]
    # Not a thread of the step pool: a daemon of its own, still running.
    thread = attempt_thread(key)
    assert thread.daemon and thread.is_alive()
    gates[key].set()
    eventually(finished[key].is_set, timeout=PROMPT)
    thread.join(PROMPT)
    assert durable.list_steps(key) == [step]


@durable.step(name="timeouts.async.held", timeout=60)
async def aheld(key: str) -> str:
    started.add(key)
    try:
        await asyncio.sleep(WAIT)
    except asyncio.CancelledError:
        cancelled.add(key)
        raise
    return "done"


@durable.workflow(name="timeouts.async.stopped")
async def stopped(key: str) -> str:
    return await aheld(key)


def test_a_worker_stop_mid_attempt_is_not_recorded_as_a_timeout(aio: None) -> None:
    key = new_id("stopped")
    queue = durable.Queue(new_id("timeouts"))

    async def main() -> tuple[bool, list[durable.StepInfo], durable.WorkflowStatus]:
        worker = durable.aio.Worker([stopped], queues=[queue], lease_seconds=LEASE)
        await worker.start()
        with durable.aio.set_workflow_id(key):
            await durable.aio.enqueue(queue, stopped, key)
        await until(lambda: key in started)
        # Its grace period passes while the step is held: the run is cancelled mid-step.
        finished_all = await worker.stop(timeout=0.2)
        info = await durable.aio.get_workflow(key)
        return finished_all, await durable.aio.list_steps(key), info.status

    finished_all, steps, status = arun(main())
    assert not finished_all and key in cancelled
    assert steps == []  # no attempt recorded, timed out or otherwise
    assert status is durable.WorkflowStatus.PENDING


# --- recovery -------------------------------------------------------------------------------


def numbered(key: str) -> str:
    """Hangs on the first call in this process; then says which attempt it is."""
    calls[key] += 1
    if calls[key] == 1:
        gates[key].wait(WAIT)
    scope = step_scope()
    assert scope is not None
    return f"ok on attempt {scope.attempt}"


RECOVERY_RETRY = durable.StepRetry(max_attempts=5, initial_backoff_seconds=0.01, jitter=0)


@durable.step(name="timeouts.numbered", timeout=0.5, retry=RECOVERY_RETRY)
def numbered_step(key: str) -> str:
    return numbered(key)


@durable.workflow(name="timeouts.recovered.sync")
def recovered(key: str) -> str:
    return numbered_step(key)


@durable.step(name="timeouts.numbered", timeout=0.5, retry=RECOVERY_RETRY)
async def anumbered_step(key: str) -> str:
    calls[key] += 1
    if calls[key] == 1:
        await asyncio.sleep(WAIT)
    scope = step_scope()
    assert scope is not None
    return f"ok on attempt {scope.attempt}"


@durable.workflow(name="timeouts.recovered.async")
async def arecovered(key: str) -> str:
    return await anumbered_step(key)


def old_run(stub: Stub, name: str, key: str) -> str:
    """A workflow whose worker ran attempt 1 of its step, saw it time out, and died."""
    executor = f"old-{uuid.uuid4().hex}"
    stub.Heartbeat(
        pb.HeartbeatRequest(executor_id=executor, workflow_names=[name], lease=Duration(seconds=1))
    )
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=key,
            name=name,
            input=payload({"args": [key], "kwargs": {}}),
            executor_id=executor,
        )
    )
    stub.RecordStepAttempt(
        pb.RecordStepAttemptRequest(
            workflow_id=key,
            step_id=1,
            name="timeouts.numbered",
            attempt=1,
            error=pb.Failure(type=TIMED_OUT, message="attempt 1 did not finish"),
            executor_id=executor,
        )
    )
    return key


@pytest.mark.parametrize("face", ["sync", "async"])
def test_attempt_numbers_continue_across_recovery_timeouts_included(
    face: str, stub: Stub, sdk: None, aio: None
) -> None:
    key = old_run(stub, f"timeouts.recovered.{face}", new_id(f"recovered-{face}"))
    if face == "sync":
        with durable.Worker([recovered], lease_seconds=LEASE):
            result = durable.retrieve_workflow(key).result(timeout=WAIT)
    else:

        async def main() -> Any:
            async with durable.aio.Worker([arecovered], lease_seconds=LEASE):
                handle = await durable.aio.retrieve_workflow(key)
                return await handle.result(timeout=WAIT)

        result = arun(main())
    # 1 timed out in the old run, 2 here, and 3 succeeded.
    assert result == "ok on attempt 3"
    (step,) = durable.list_steps(key)
    assert step.attempts == 3 and failed(step) == [(1, TIMED_OUT), (2, TIMED_OUT)]


# --- the error and the options --------------------------------------------------------------


def test_step_timeout_error_is_recorded_under_its_stable_name_and_rebuilt_on_replay() -> None:
    error = durable.StepTimeoutError("step 's' attempt 1 did not finish")
    assert isinstance(error, durable.DurableError) and isinstance(error, TimeoutError)
    recorded = _payloads.failure(error)
    assert recorded.type == TIMED_OUT
    rebuilt = _payloads.exception(recorded)
    assert type(rebuilt) is durable.StepTimeoutError and str(rebuilt) == str(error)


@pytest.mark.parametrize(
    "timeout",
    [0, -1, 365 * 24 * 3600 + 1, timedelta(days=400), timedelta(0), float("nan"), float("inf")],
)
def test_a_timeout_outside_0_to_a_year_is_a_value_error_naming_it(timeout: Any) -> None:
    with pytest.raises(ValueError, match=r"^timeout must be more than 0 and at most"):
        durable.step(timeout=timeout)
    with pytest.raises(ValueError, match=r"^timeout must be"), durable.set_step_timeout(timeout):
        pass


@pytest.mark.parametrize("timeout", ["5", True, [1]])
def test_a_timeout_that_is_not_a_duration_is_a_type_error(timeout: Any) -> None:
    with pytest.raises(TypeError, match="duration"):
        durable.step(timeout=timeout)


def test_valid_timeouts_are_accepted_in_seconds_or_as_a_timedelta() -> None:
    for timeout in (0.001, 5, timedelta(minutes=5), 365 * 24 * 3600, None):

        @durable.step(timeout=timeout)
        def fine() -> str:
            return "ran"

        assert fine() == "ran"  # outside a workflow: a plain call
        with durable.set_step_timeout(timeout):
            pass
