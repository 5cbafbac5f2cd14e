"""The Python SDK against a real coordinator: steps run once, replays return recorded
outcomes, events are published and read."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pytest

import durable
from tests.support import eventually, new_id

pytestmark = pytest.mark.usefixtures("sdk")

P = ParamSpec("P")
R = TypeVar("R")

calls: Counter[str] = Counter()


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing records it."""


crash_at: set[str] = set()


def start_as(
    workflow_id: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> durable.WorkflowHandle[R]:
    with durable.set_workflow_id(workflow_id):
        return durable.start_workflow(fn, *args, **kwargs)


@durable.step
def add(a: int, b: int) -> int:
    calls["add"] += 1
    return a + b


@durable.step
def pair(x: str) -> tuple[str, str]:
    calls["pair"] += 1
    return (x, x)


@durable.step
def fail(message: str) -> None:
    calls["fail"] += 1
    raise ValueError(message)


@durable.step
def checkpoint(label: str) -> str:
    calls[label] += 1
    if label in crash_at:
        raise Crash(label)
    return label


@durable.workflow
def arithmetic(a: int, b: int) -> int:
    return add(add(a, b), 10)


@durable.workflow
def progress(wid_label: str) -> str:
    durable.set_event("progress", 0)
    checkpoint(f"{wid_label}-one")
    durable.set_event("progress", 50)
    checkpoint(f"{wid_label}-two")
    durable.set_event("progress", 100)
    checkpoint(f"{wid_label}-three")
    return "done"


@durable.workflow
def catches_step_error() -> str:
    try:
        fail("boom")
    except ValueError as exc:
        return f"caught {exc}"
    return "not raised"


@durable.workflow
def raises() -> None:
    raise KeyError("missing")


@durable.workflow
def returns_pair() -> list[str]:
    return [*pair("x"), type(pair("y")).__name__]


@durable.workflow(name="tests.renamed")
def sets_event_in_step() -> None:
    publish_from_step()


@durable.step
def publish_from_step() -> None:
    durable.set_event("inside", 1)


def test_workflow_runs_steps_and_returns_result() -> None:
    handle = durable.start_workflow(arithmetic, 1, 2)
    assert handle.result(timeout=10) == 13
    assert handle.status() is durable.WorkflowStatus.SUCCESS


def test_calling_a_workflow_runs_it_under_the_chosen_id() -> None:
    workflow_id = new_id()
    with durable.set_workflow_id(workflow_id):
        assert arithmetic(2, 3) == 15
    assert durable.retrieve_workflow(workflow_id).result(timeout=10) == 15


def test_second_start_with_same_id_returns_recorded_result_without_running() -> None:
    workflow_id = new_id()
    before = calls["add"]
    first = start_as(workflow_id, arithmetic, 1, 1)
    assert first.result(timeout=10) == 12
    again = start_as(workflow_id, arithmetic, 5, 5)
    assert again.result(timeout=10) == 12
    assert calls["add"] - before == 2


def test_resumed_workflow_does_not_rerun_completed_steps() -> None:
    workflow_id = new_id()
    label = workflow_id
    crash_at.add(f"{label}-three")
    with pytest.raises(Crash):
        start_as(workflow_id, progress, label).result(timeout=10)
    assert durable.retrieve_workflow(workflow_id).status() is durable.WorkflowStatus.PENDING
    assert durable.get_event(workflow_id, "progress", timeout=5) == 100

    crash_at.discard(f"{label}-three")
    assert start_as(workflow_id, progress, label).result(10) == "done"
    assert (calls[f"{label}-one"], calls[f"{label}-two"], calls[f"{label}-three"]) == (1, 1, 2)
    # The replay skipped the recorded set_event calls: progress never went back to 0 or 50.
    assert list(durable.watch_event(workflow_id, "progress", timeout=5)) == [100]


def test_watcher_sees_every_progress_value_in_order() -> None:
    workflow_id = new_id()
    crash_at.add(f"{workflow_id}-one")  # park the workflow after progress 0
    with pytest.raises(Crash):
        start_as(workflow_id, progress, workflow_id).result(10)
    seen: list[Any] = []
    watcher = threading.Thread(
        target=lambda: seen.extend(durable.watch_event(workflow_id, "progress", timeout=20))
    )
    watcher.start()
    eventually(lambda: seen == [0])  # the watcher is following before the workflow resumes
    crash_at.discard(f"{workflow_id}-one")
    start_as(workflow_id, progress, workflow_id).result(10)
    watcher.join(timeout=20)
    assert not watcher.is_alive()
    assert seen == [0, 50, 100]


def test_recorded_step_error_is_raised_again_as_its_type() -> None:
    before = calls["fail"]
    assert durable.start_workflow(catches_step_error).result(10) == "caught boom"
    assert calls["fail"] - before == 1


def test_workflow_error_is_recorded_and_raised_to_every_reader() -> None:
    handle = durable.start_workflow(raises)
    with pytest.raises(KeyError):
        handle.result(timeout=10)
    assert handle.status() is durable.WorkflowStatus.ERROR
    with pytest.raises(KeyError):
        durable.retrieve_workflow(handle.workflow_id).result(timeout=10)


def test_step_output_reads_back_as_json_on_first_run_too() -> None:
    assert durable.start_workflow(returns_pair).result(10) == ["x", "x", "list"]


def test_set_event_outside_a_workflow_is_refused() -> None:
    with pytest.raises(durable.NotInWorkflowError):
        durable.set_event("key", 1)


def test_set_event_inside_a_step_is_refused() -> None:
    with pytest.raises(durable.NotInWorkflowError):
        durable.start_workflow(sets_event_in_step).result(10)


def test_get_event_returns_none_on_timeout() -> None:
    assert durable.get_event(new_id(), "never", timeout=0.2) is None


def test_same_id_under_another_workflow_is_a_conflict() -> None:
    workflow_id = new_id()
    start_as(workflow_id, arithmetic, 1, 1).result(10)
    with pytest.raises(durable.WorkflowConflictError):
        start_as(workflow_id, raises)


def test_changed_workflow_code_fails_replay_as_nondeterministic() -> None:
    workflow_id = new_id()
    crash_at.add(f"{workflow_id}-two")
    with pytest.raises(Crash):
        start_as(workflow_id, progress, workflow_id).result(10)

    @durable.workflow(name=f"{progress.__module__}.progress")
    def progress_v2(label: str) -> str:
        durable.set_event("progress", 0)
        add(1, 1)  # was checkpoint(label-one)
        return "v2"

    with pytest.raises(durable.NonDeterminismError, match=r"checkpoint.*add"):
        start_as(workflow_id, progress_v2, workflow_id).result(10)
    assert durable.retrieve_workflow(workflow_id).status() is durable.WorkflowStatus.PENDING


def test_invalid_workflow_id_is_rejected_with_a_typed_error() -> None:
    with pytest.raises(durable.InvalidRequestError) as info:
        start_as("has spaces", arithmetic, 1, 1)
    assert info.value.metadata["field"] == "workflow_id"


def test_public_surface_is_pinned() -> None:
    assert "workflow" in durable.__all__ and "step" in durable.__all__
    assert all(hasattr(durable, name) for name in durable.__all__)
