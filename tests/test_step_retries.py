"""Step retries: a failing step is retried with exponential backoff and every failed attempt
is recorded; errors not listed in `retry_on` (and BaseExceptions) are not retried; a step
replayed from its record never runs again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, new_id
from tests.worker_harness import workers_for
from tests.worker_process import FLAKY_FAILURES, FLAKY_RETRY


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


def seconds(stamp: pb.Step | pb.StepAttempt, field: str = "start_time") -> float:
    value: float = getattr(stamp, field).ToNanoseconds() / 1e9
    return value


def test_a_failing_step_is_retried_with_backoff_and_each_attempt_is_recorded(
    coordinator: Coordinator, client: durable.Client, tmp_path: Path
) -> None:
    with workers_for(coordinator.address, tmp_path) as workers:
        worker = workers.spawn("retrier")
        worker.wait_ready()
        workflow_id = new_id("retried")
        worker.start("retried", workflow_id)
        outcome = durable.retrieve_workflow(workflow_id, client=client).result(timeout=30)
        assert outcome == {"flaky": "ok after 3", "picky": "not worth retrying"}
        assert workers.effects.counts(workflow_id) == Counter({"flaky": 3, "picky": 1})

    flaky, picky = client.list_steps(workflow_id).steps
    assert flaky.attempts == FLAKY_FAILURES + 1 and flaky.HasField("output")
    assert [(a.attempt, a.error.type, a.error.message) for a in flaky.failed_attempts] == [
        (1, "builtins.TimeoutError", "attempt 1 timed out"),
        (2, "builtins.TimeoutError", "attempt 2 timed out"),
    ]
    # Each pause lasted at least its delay less the most jitter takes off.
    starts = [seconds(a) for a in flaky.failed_attempts] + [seconds(flaky)]
    ends = [seconds(a, "end_time") for a in flaky.failed_attempts]
    for n in (1, 2):
        least = FLAKY_RETRY.nominal_delay(n) * (1 - FLAKY_RETRY.jitter)
        assert starts[n] - ends[n - 1] >= least
    assert starts[2] - starts[0] >= (0.4 + 0.8) * (1 - FLAKY_RETRY.jitter)

    # ValueError is not in retry_on: recorded after its one attempt.
    assert picky.attempts == 1 and list(picky.failed_attempts) == []
    assert picky.error.type == "builtins.ValueError"


# --- in this process ----------------------------------------------------------------------

calls: Counter[str] = Counter()
FAST = durable.StepRetry(max_attempts=3, initial_backoff_seconds=0.01, jitter=0)


class Crash(BaseException):
    """Stands for the process dying: a BaseException, so never retried nor recorded."""


crash_after: set[str] = set()


@durable.step(retry=FAST)
def fails_twice(key: str) -> str:
    calls[key] += 1
    if calls[key] < 3:
        raise ConnectionError(f"try {calls[key]}")
    return "ok"


@durable.step(retry=FAST)
def always_fails(key: str) -> None:
    calls[key] += 1
    raise ConnectionError("down")


@durable.step(retry=FAST)
def dies(key: str) -> None:
    calls[key] += 1
    raise Crash(key)


@durable.workflow
def retried_then_crashes(key: str) -> str:
    value = fails_twice(key)
    if key in crash_after:
        raise Crash(key)
    return value


@durable.workflow
def gives_up(key: str) -> str:
    try:
        always_fails(key)
    except ConnectionError as exc:
        return f"gave up: {exc}"
    return "no error"


@durable.workflow
def crashes_in_step(key: str) -> None:
    dies(key)


@pytest.mark.usefixtures("sdk")
def test_a_replayed_step_is_not_retried_nor_run_again() -> None:
    workflow_id = new_id("replayed")
    crash_after.add(workflow_id)
    with durable.set_workflow_id(workflow_id), pytest.raises(Crash):
        durable.start_workflow(retried_then_crashes, workflow_id).result(timeout=10)
    assert calls[workflow_id] == 3

    crash_after.discard(workflow_id)
    with durable.set_workflow_id(workflow_id):
        assert durable.start_workflow(retried_then_crashes, workflow_id).result(10) == "ok"
    assert calls[workflow_id] == 3


@pytest.mark.usefixtures("sdk")
def test_the_last_attempts_error_is_recorded_once_attempts_run_out(client: durable.Client) -> None:
    key = new_id("exhausted")
    with durable.set_workflow_id(key):
        assert durable.start_workflow(gives_up, key).result(timeout=10) == "gave up: down"
    assert calls[key] == FAST.max_attempts
    (step,) = client.list_steps(key).steps
    assert step.attempts == 3 and [a.attempt for a in step.failed_attempts] == [1, 2]
    assert step.error.type == "builtins.ConnectionError"


@pytest.mark.usefixtures("sdk")
def test_a_base_exception_is_neither_retried_nor_recorded(client: durable.Client) -> None:
    key = new_id("base")
    with durable.set_workflow_id(key), pytest.raises(Crash):
        durable.start_workflow(crashes_in_step, key).result(timeout=10)
    assert calls[key] == 1
    assert list(client.list_steps(key).steps) == []


# --- the policy -------------------------------------------------------------------------


def test_delays_grow_exponentially_up_to_the_cap_and_jitter_only_shortens_them() -> None:
    policy = durable.StepRetry(
        max_attempts=10, initial_backoff_seconds=1, multiplier=3, max_backoff_seconds=20
    )
    assert [policy.nominal_delay(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    with mock.patch("random.random", return_value=0.999999):
        assert policy.delay(2) == pytest.approx(3 * (1 - policy.jitter), rel=1e-5)
    with mock.patch("random.random", return_value=0.0):
        assert policy.delay(5) == 20


def test_only_listed_exceptions_are_retried_and_only_while_attempts_remain() -> None:
    policy = durable.StepRetry(max_attempts=2, retry_on=(ConnectionError,))
    assert policy.retries(ConnectionResetError(), 1)
    assert not policy.retries(ConnectionResetError(), 2)
    assert not policy.retries(ValueError(), 1)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"initial_backoff_seconds": -1},
        {"initial_backoff_seconds": 5, "max_backoff_seconds": 1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"retry_on": (KeyboardInterrupt,)},
        {"retry_on": [ValueError]},
        {"max_attempts": 2.5},
    ],
)
def test_a_step_retry_policy_is_validated(options: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        durable.StepRetry(**options)  # type: ignore[arg-type]


def test_step_retry_is_frozen_and_retry_must_be_a_step_retry() -> None:
    with pytest.raises(AttributeError):
        FAST.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        durable.step(retry=3)  # type: ignore[call-overload]
