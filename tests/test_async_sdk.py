"""The SDK's async face (`durable.aio`, `async def` workflows and steps) against a real
coordinator, side by side with the sync face.

Behaviour the faces share is tested once for both: each test taking `face` runs on the
sync face and on the async face (tests/async_faces.py has the workflows written for each
and the runners). Then the async face's own promises: call-order step positions under
`asyncio.gather`, a task (or a worker's run) cancelled mid-step, face mismatches that raise
instead of blocking. Worker processes killed or stopped by a signal are
tests/test_async_worker_recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

import durable
import durable.aio
from durable._aio.client import default_client
from durable._core import batching
from tests.async_faces import (
    ERRORS,
    LEASE,
    WAIT,
    AsyncFace,
    Crash,
    Face,
    SyncFace,
    adouble,
    amark,
    apipeline,
    count,
    counts,
    crash_at,
    double,
    effects,
    gates,
    kinds_and_names,
    mark,
    published,
)
from tests.support import Coordinator, eventually, new_id

T = TypeVar("T")


@pytest.fixture(scope="module")
def aio(coordinator: Coordinator) -> None:
    """durable.aio's default clients (one per event loop) pointed at the coordinator."""
    durable.aio.configure(coordinator.address)


@pytest.fixture(scope="module")
def async_face(aio: None) -> Iterator[AsyncFace]:
    face = AsyncFace()
    yield face
    face.close()


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, sdk: None) -> Face:
    if request.param == "sync":
        return SyncFace()
    async_face: AsyncFace = request.getfixturevalue("async_face")
    return async_face


@pytest.fixture(autouse=True)
def open_gates() -> Iterator[None]:
    """Every gate a test made is opened at its end, so no held step outlives the test."""
    yield
    for gate in gates.values():
        gate.set()


# --- both faces ----------------------------------------------------------------------------


def test_replay_does_not_rerun_completed_steps(face: Face) -> None:
    workflow_id = new_id(f"{face.name}-replay")
    labels = [f"{workflow_id}-one", f"{workflow_id}-two", f"{workflow_id}-three"]
    crash_at.add(labels[2])
    with pytest.raises(Crash):
        face.run("progress", workflow_id, workflow_id)
    assert face.get_workflow(workflow_id).status is durable.WorkflowStatus.PENDING
    assert counts(*labels) == [1, 1, 1]

    crash_at.discard(labels[2])
    # A fresh start under the same ID resumes it: only the crashed step runs again.
    assert face.start("progress", workflow_id, workflow_id).result(timeout=WAIT) == "done"
    assert counts(*labels) == [1, 1, 2]
    # A finished workflow just returns its result, whatever the arguments.
    assert face.run("progress", workflow_id, "other-label") == "done"
    assert counts(*labels) == [1, 1, 2]
    assert face.get_workflow(workflow_id).status is durable.WorkflowStatus.SUCCESS
    steps = face.list_steps(workflow_id)
    assert [s.step_id for s in steps] == list(range(1, 7))
    assert [s.output for s in steps if s.kind == "step"] == labels


def test_a_replayed_set_event_keeps_the_first_value_written(face: Face) -> None:
    workflow_id = new_id(f"{face.name}-first-writer")
    published[workflow_id] = "first"
    crash_at.add(workflow_id)
    with pytest.raises(Crash):
        face.run("publish", workflow_id, workflow_id)
    assert face.get_event(workflow_id, "value", timeout=5) == "first"

    # The replay computes another value, but its set_event was recorded: the first stays.
    published[workflow_id] = "second"
    crash_at.discard(workflow_id)
    assert face.run("publish", workflow_id, workflow_id) == "second"
    assert face.get_event(workflow_id, "value", timeout=5) == "first"
    assert face.list_events(workflow_id) == {"value": "first"}
    seen: list[Any] = []
    face.watch(workflow_id, "value", 5.0, seen)  # a finished workflow: its last value
    assert seen == ["first"]
    assert kinds_and_names(face.list_steps(workflow_id))[0] == ("set_event", "value")


def test_two_runs_of_one_workflow_id_at_once_run_each_step_once(
    face: Face, pool: ThreadPoolExecutor
) -> None:
    label = new_id(f"{face.name}-twice")
    one, two, three = f"{label}-1", f"{label}-2", f"{label}-3"
    first = pool.submit(face.run, "pipeline", label, label)
    eventually(lambda: count(two) == 1)  # the first run holds step 2
    second = pool.submit(face.run, "pipeline", label, label)
    gates[two].set()
    assert first.result(timeout=WAIT) == second.result(timeout=WAIT) == [one, two, three]
    assert counts(one, two, three) == [1, 1, 1]
    assert [s.output for s in face.list_steps(label)] == [one, two, three]


def test_a_watcher_follows_progress_from_0_to_50_to_100(
    face: Face, pool: ThreadPoolExecutor
) -> None:
    workflow_id = new_id(f"{face.name}-watched")
    crash_at.add(f"{workflow_id}-one")  # park the workflow after progress 0
    with pytest.raises(Crash):
        face.run("progress", workflow_id, workflow_id)
    seen: list[Any] = []
    watcher = pool.submit(face.watch, workflow_id, "progress", 20.0, seen)
    eventually(lambda: seen == [0])  # following before the workflow resumes
    crash_at.discard(f"{workflow_id}-one")
    assert face.run("progress", workflow_id, workflow_id) == "done"
    watcher.result(timeout=20)  # ends once the workflow has finished
    assert seen == [0, 50, 100]


def test_get_event_returns_none_on_timeout(face: Face) -> None:
    began = time.monotonic()
    assert face.get_event(new_id(), "never", timeout=0.3) is None
    assert time.monotonic() - began >= 0.3


def test_get_event_in_a_workflow_is_checkpointed_and_replays_the_value_first_read(
    face: Face,
) -> None:
    source, reader = new_id(f"{face.name}-source"), new_id(f"{face.name}-reader")
    crash_at.add(f"{source}-one")  # the source stops at progress 0
    with pytest.raises(Crash):
        face.run("progress", source, source)
    crash_at.add(reader)
    with pytest.raises(Crash):
        face.run("reads", reader, source, reader)

    crash_at.discard(f"{source}-one")
    assert face.run("progress", source, source) == "done"
    assert face.get_event(source, "progress", timeout=5) == 100
    crash_at.discard(reader)
    assert face.run("reads", reader, source, reader) == 0  # what it read the first time
    steps = face.list_steps(reader)
    assert [(s.kind, s.output) for s in steps] == [("get_event", 0), ("step", reader)]


def test_messages_are_received_in_order_once_and_recv_times_out_with_none(face: Face) -> None:
    receiver = new_id(f"{face.name}-receiver")
    face.send(receiver, {"n": 0}, "orders")  # before the receiver starts: it waits
    face.send(receiver, {"n": 1}, "orders")
    assert face.run("collect", receiver, [5, 5, 0.3]) == [{"n": 0}, {"n": 1}, None]
    steps = face.list_steps(receiver)
    assert kinds_and_names(steps) == [("recv", "orders")] * 3
    assert [s.timed_out for s in steps] == [False, False, True]

    # A send from a workflow is a step: a replay after a crash does not send again.
    sender, second_receiver = new_id(f"{face.name}-sender"), new_id(f"{face.name}-receiver")
    crash_at.add(f"{sender}-sent")
    with pytest.raises(Crash):
        face.run("relay", sender, second_receiver, f"{sender}-sent")
    crash_at.discard(f"{sender}-sent")
    assert face.run("relay", sender, second_receiver, f"{sender}-sent") == "sent"
    assert face.run("collect", second_receiver, [5, 0.3]) == [f"ping from {sender}", None]
    assert kinds_and_names(face.list_steps(sender))[0] == ("send", "orders")


def test_a_durable_sleep_is_not_slept_again_on_replay(face: Face) -> None:
    workflow_id = new_id(f"{face.name}-nap")
    crash_at.add(workflow_id)
    began = time.monotonic()
    with pytest.raises(Crash):
        face.run("nap", workflow_id, 0.5, workflow_id)
    assert time.monotonic() - began >= 0.5
    crash_at.discard(workflow_id)
    began = time.monotonic()
    assert face.run("nap", workflow_id, 0.5, workflow_id) == "rested"
    assert time.monotonic() - began < 0.5  # its recorded wake-up time has passed
    steps = face.list_steps(workflow_id)
    assert kinds_and_names(steps)[0] == ("sleep", "sleep")
    assert steps[0].deadline is not None


def test_children_called_and_started_are_recorded_and_not_rerun_on_replay(face: Face) -> None:
    parent_id = new_id(f"{face.name}-parent")
    label = f"{parent_id}-done"
    crash_at.add(label)
    with pytest.raises(Crash):
        face.run("parent", parent_id, 5, label)
    children = [f"{parent_id}-1", f"{parent_id}-2"]
    assert counts(*(f"double-{c}" for c in children)) == [1, 1]

    crash_at.discard(label)
    assert face.run("parent", parent_id, 5, label) == [10, 12, children[1]]
    assert counts(*(f"double-{c}" for c in children)) == [1, 1]  # recorded children
    assert sorted(w.workflow_id for w in face.children(parent_id)) == children
    for child in children:
        info = face.get_workflow(child)
        assert (info.parent_workflow_id, info.status) == (parent_id, durable.WorkflowStatus.SUCCESS)
    steps = face.list_steps(parent_id)
    assert [(s.kind, s.output) for s in steps] == [
        ("start_workflow", children[0]),
        ("start_workflow", children[1]),
        ("step", label),
    ]


def test_enqueued_workflows_run_once_on_a_worker_serving_the_queue(face: Face) -> None:
    queue = durable.Queue(new_id(f"{face.name}-queue"), concurrency=2)
    handles = [face.enqueue(queue, "echo", {"n": n}) for n in range(3)]
    assert {h.status() for h in handles} == {durable.WorkflowStatus.ENQUEUED}

    parent_id = new_id(f"{face.name}-enqueuer")
    with face.worker(["echo"], queues=[queue]) as executor:
        assert [h.result(timeout=WAIT) for h in handles] == [{"n": n} for n in range(3)]
        # A workflow enqueues a child on the queue and awaits it.
        assert face.run("enqueuer", parent_id, queue.name, "child") == [
            "child",
            f"{parent_id}-1",
        ]
    for workflow_id in [h.workflow_id for h in handles] + [f"{parent_id}-1"]:
        info = face.get_workflow(workflow_id)
        assert (info.queue_name, info.executor_id) == (queue.name, executor)
        assert count(f"echo-{workflow_id}") == 1
    assert face.get_workflow(f"{parent_id}-1").parent_workflow_id == parent_id


def test_cancel_stops_a_run_resume_continues_it_and_a_fork_reruns_from_its_step(
    face: Face,
) -> None:
    label = new_id(f"{face.name}-pipeline")
    one, two, three = f"{label}-1", f"{label}-2", f"{label}-3"
    with face.worker(["pipeline"]):
        handle = face.start("pipeline", label, label)
        eventually(lambda: count(two) == 1)  # step 2 is in flight, held

        assert face.cancel(label).status is durable.WorkflowStatus.CANCELLED
        gates[two].set()
        with pytest.raises(durable.WorkflowCancelledError):
            handle.result(timeout=WAIT)
        assert counts(one, two, three) == [1, 1, 0]  # it stopped at its next step
        assert [s.output for s in face.list_steps(label)] == [one]  # step 2 came too late

        assert face.resume(label).status is durable.WorkflowStatus.ENQUEUED
        assert face.retrieve(label).result(timeout=WAIT) == [one, two, three]
        assert counts(one, two, three) == [1, 2, 1]

        fork = face.fork(label, 3)
        assert fork.workflow_id != label
        assert fork.result(timeout=WAIT) == [one, two, three]
        assert counts(one, two, three) == [1, 2, 2]  # only step 3 ran again
        assert face.get_workflow(fork.workflow_id).forked_from == label


def test_a_workflow_past_its_timeout_is_cancelled_at_its_next_step(face: Face) -> None:
    label = new_id(f"{face.name}-timed")
    handle = face.start("pipeline", label, label, timeout=1.0)
    eventually(lambda: count(f"{label}-2") == 1)
    eventually(
        lambda: face.get_workflow(label).status is durable.WorkflowStatus.CANCELLED, timeout=10
    )
    gates[f"{label}-2"].set()
    with pytest.raises(durable.WorkflowCancelledError):
        handle.result(timeout=WAIT)
    assert [s.output for s in face.list_steps(label)] == [f"{label}-1"]
    assert count(f"{label}-3") == 0


def test_a_failing_step_is_retried_and_each_failed_attempt_recorded(face: Face) -> None:
    workflow_id = new_id(f"{face.name}-retried")
    crash_at.add(f"{workflow_id}-after")
    with pytest.raises(Crash):
        face.run("retried", workflow_id, workflow_id)
    flaky_step, picky_step = face.list_steps(workflow_id)
    assert flaky_step.attempts == 3 and flaky_step.output == "ok after 3"
    assert [(a.attempt, a.error.type, a.error.message) for a in flaky_step.failed_attempts] == [
        (1, "builtins.TimeoutError", "attempt 1 timed out"),
        (2, "builtins.TimeoutError", "attempt 2 timed out"),
    ]
    # ValueError is not in retry_on: recorded after its one attempt.
    assert picky_step.attempts == 1 and picky_step.failed_attempts == ()
    assert picky_step.error is not None and picky_step.error.type == "builtins.ValueError"
    # A replay gets the recorded outcomes back: no attempt runs again.
    crash_at.discard(f"{workflow_id}-after")
    expected = {"flaky": "ok after 3", "picky": "not worth retrying"}
    assert face.run("retried", workflow_id, workflow_id) == expected
    assert counts(f"{workflow_id}-flaky", f"{workflow_id}-picky") == [3, 1]


@pytest.mark.parametrize(
    "error",
    [
        "ValueError",
        "KeyError",
    ],
)
def test_a_recorded_step_error_replays_as_the_first_run_saw_it(face: Face, error: str) -> None:
    workflow_id = new_id(f"{face.name}-catches")
    crash_at.add(f"{workflow_id}-after")
    with pytest.raises(Crash):
        face.run("catches", workflow_id, error, workflow_id)
    assert count(workflow_id) == 1  # the first run caught the error the step raised
    crash_at.discard(f"{workflow_id}-after")
    # The step is not run again: its recorded error is raised again, as the same type...
    replayed = face.run("catches", workflow_id, error, workflow_id)
    assert count(workflow_id) == 1
    assert replayed[0] == error
    # ... and reads as the one the first run caught.
    assert replayed[1] == str(ERRORS[error](workflow_id))


def test_a_replay_with_another_step_fails_as_nondeterministic(face: Face) -> None:
    workflow_id = new_id(f"{face.name}-changed")
    crash_at.add(f"{workflow_id}-two")
    with pytest.raises(Crash):
        face.run("progress", workflow_id, workflow_id)
    with pytest.raises(durable.NonDeterminismError, match=r"mark.*other"):
        face.run("progress_v2", workflow_id, workflow_id)
    assert face.get_workflow(workflow_id).status is durable.WorkflowStatus.PENDING
    assert count(f"{workflow_id}-one") == 1  # the diverging step never ran


# --- the async face's own promises ---------------------------------------------------------


def arun(main: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
    """`asyncio.run(main)`, bounded, closing the loop's default durable.aio client after."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main, timeout)
        finally:
            await default_client().close()

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (on the loop) until check() holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s: {check}"
        await asyncio.sleep(0.01)


@durable.step(name="aio_tests.async.slow")
async def slow(label: str, delay: float) -> str:
    effects.append(label)
    await asyncio.sleep(delay)
    return f"{label} after {delay}"


@durable.workflow(name="aio_tests.async.gathers")
async def gathers(label: str) -> list[str]:
    values = await asyncio.gather(
        slow(f"{label}-a", 0.3),
        slow(f"{label}-b", 0.0),
        durable.aio.run_step(mark, f"{label}-c"),  # a plain step, in the thread pool
    )
    await amark(f"{label}-after")
    return list(values)


def test_a_gather_of_steps_replays_in_call_order_without_rerunning(aio: None) -> None:
    workflow_id = new_id("gather")
    a, b, c, after = (f"{workflow_id}-{x}" for x in ("a", "b", "c", "after"))
    expected = [f"{a} after 0.3", f"{b} after 0.0", c]
    crash_at.add(after)

    async def run() -> list[str]:
        with durable.aio.set_workflow_id(workflow_id):
            return await gathers(workflow_id)

    with pytest.raises(Crash):
        arun(run())
    first = arun(durable.aio.list_steps(workflow_id))
    # Positions follow the calls, not the finishes: b was recorded before a.
    assert [(s.step_id, s.name, s.output) for s in first] == [
        (1, "aio_tests.async.slow", expected[0]),
        (2, "aio_tests.async.slow", expected[1]),
        (3, "aio_tests.sync.mark", expected[2]),
    ]
    assert first[1].recorded_at < first[0].recorded_at

    crash_at.discard(after)
    assert arun(run()) == expected
    assert counts(a, b, c, after) == [1, 1, 1, 2]
    steps = arun(durable.aio.list_steps(workflow_id))
    assert [(s.step_id, s.output) for s in steps] == [(n, v) for n, v in enumerate(expected, 1)] + [
        (4, after)
    ]


@durable.workflow(name="aio_tests.async.gathers_children_and_messages")
async def gathers_children_and_messages(label: str) -> list[Any]:
    children = await asyncio.gather(adouble(1), adouble(2))
    messages = await asyncio.gather(
        durable.aio.recv("first", timeout=WAIT), durable.aio.recv("second", timeout=WAIT)
    )
    await amark(label)
    return [*children, *messages]


def test_gathered_children_and_receives_take_positions_in_call_order(aio: None) -> None:
    workflow_id = new_id("gathers-children")
    children = [f"{workflow_id}-1", f"{workflow_id}-2"]
    crash_at.add(workflow_id)

    async def run() -> list[Any]:
        with durable.aio.set_workflow_id(workflow_id):
            return await gathers_children_and_messages(workflow_id)

    async def first_run() -> None:
        running = asyncio.create_task(run())
        # The second topic's message is sent first: positions still follow the calls.
        await until(lambda: count(f"double-{children[1]}") == 1)
        await durable.aio.send(workflow_id, "to the second", "second")
        await durable.aio.send(workflow_id, "to the first", "first")
        await running

    with pytest.raises(Crash):
        arun(first_run())
    crash_at.discard(workflow_id)
    assert arun(run()) == [2, 4, "to the first", "to the second"]
    assert counts(*(f"double-{c}" for c in children)) == [1, 1]
    steps = arun(durable.aio.list_steps(workflow_id))
    assert [(s.step_id, s.kind, s.name, s.output) for s in steps] == [
        (1, "start_workflow", "aio_tests.async.double", children[0]),
        (2, "start_workflow", "aio_tests.async.double", children[1]),
        (3, "recv", "first", "to the first"),
        (4, "recv", "second", "to the second"),
        (5, "step", "aio_tests.async.mark", workflow_id),
    ]


def test_a_result_wait_that_times_out_or_is_cancelled_leaves_the_workflow_running(
    aio: None,
) -> None:
    label = new_id("waited")

    async def main() -> tuple[durable.WorkflowStatus, list[str]]:
        with durable.aio.set_workflow_id(label):
            handle = await durable.aio.start_workflow(apipeline, label)
        await until(lambda: count(f"{label}-2") == 1)  # held in step 2
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.1)
        waiting = asyncio.create_task(handle.result())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        status = await handle.status()
        gates[f"{label}-2"].set()
        return status, await handle.result(timeout=WAIT)

    status, outcome = arun(main())
    assert status is durable.WorkflowStatus.PENDING
    assert outcome == [f"{label}-1", f"{label}-2", f"{label}-3"]
    assert counts(f"{label}-1", f"{label}-2", f"{label}-3") == [1, 1, 1]


@durable.step(name="aio_tests.async.waits")
async def waits(label: str) -> str:
    effects.append(f"{label}-started")
    if label in crash_at:
        await asyncio.Event().wait()  # until the test cancels the task
    effects.append(f"{label}-finished")
    return label


@durable.workflow(name="aio_tests.async.waits_in_a_step")
async def waits_in_a_step(label: str) -> list[str]:
    return [await amark(f"{label}-first"), await waits(label)]


def test_a_task_cancelled_mid_step_leaves_the_step_unrecorded(aio: None) -> None:
    workflow_id = new_id("cancelled-task")
    label = workflow_id
    crash_at.add(label)  # `waits` waits forever this time

    async def cancel_mid_step() -> tuple[list[durable.StepInfo], durable.WorkflowStatus]:
        with durable.aio.set_workflow_id(workflow_id):
            task = asyncio.create_task(waits_in_a_step(label))
        await until(lambda: count(f"{label}-started") == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        info = await durable.aio.get_workflow(workflow_id)
        return await durable.aio.list_steps(workflow_id), info.status

    steps, status = arun(cancel_mid_step())
    assert [s.output for s in steps] == [f"{label}-first"]  # the cancelled step is not
    assert status is durable.WorkflowStatus.PENDING

    crash_at.discard(label)

    async def rerun() -> list[str]:
        with durable.aio.set_workflow_id(workflow_id):
            return await waits_in_a_step(label)

    assert arun(rerun()) == [f"{label}-first", label]
    assert counts(f"{label}-first", f"{label}-started", f"{label}-finished") == [1, 2, 1]
    assert [s.output for s in arun(durable.aio.list_steps(workflow_id))] == [
        f"{label}-first",
        label,
    ]


# Face mismatches: each op is called inside a workflow of the other face, and raises at
# the call (so nothing is left to await, nor blocks the loop).

SYNC_API = r"was called through the sync API inside an async workflow"
IN_ASYNC: dict[str, tuple[Callable[[], object], str]] = {
    "set_event": (lambda: durable.set_event("k", 1), rf"^set_event {SYNC_API}"),
    "get_event": (lambda: durable.get_event("w", "k", timeout=0.1), rf"^get_event {SYNC_API}"),
    "watch_event": (lambda: list(durable.watch_event("w", "k", timeout=0.1)), SYNC_API),
    "send": (lambda: durable.send("w", 1, "t"), rf"^send {SYNC_API}"),
    "recv": (lambda: durable.recv("t", timeout=0.1), rf"^recv {SYNC_API}"),
    "sleep": (lambda: durable.sleep(0.01), rf"^sleep {SYNC_API}"),
    "plain_step": (lambda: mark("x"), r"plain function called in an async workflow.*run_step"),
    "call_sync_workflow": (lambda: double(1), SYNC_API),
    "start_sync_workflow": (lambda: durable.start_workflow(double, 1), SYNC_API),
    "start_async_workflow": (
        lambda: durable.start_workflow(adouble, 1),
        r"is async def: start it with `await durable\.aio\.start_workflow",
    ),
    "enqueue": (lambda: durable.Queue("q").enqueue(double, 1), SYNC_API),
}


@pytest.mark.parametrize("case", sorted(IN_ASYNC))
def test_a_sync_op_in_an_async_workflow_raises_durable_error(aio: None, case: str) -> None:
    op, message = IN_ASYNC[case]

    @durable.workflow(name=f"aio_tests.mismatch.in_async.{case}")
    async def mismatched() -> None:
        op()

    workflow_id = new_id("in-async")

    async def run() -> None:
        with durable.aio.set_workflow_id(workflow_id):
            await mismatched()

    with pytest.raises(durable.DurableError, match=message):
        arun(run(), timeout=10)
    info = arun(durable.aio.get_workflow(workflow_id))
    assert info.status is durable.WorkflowStatus.ERROR  # recorded: the code is wrong
    assert info.error is not None and info.error.type == "durable.errors.DurableError"


IN_SYNC_WORKFLOW = r"was called inside a sync workflow"
IN_SYNC: dict[str, tuple[Callable[[], object], str]] = {
    "set_event": (
        lambda: durable.aio.set_event("k", 1),
        rf"durable\.aio\.set_event {IN_SYNC_WORKFLOW}",
    ),
    "get_event": (
        lambda: durable.aio.get_event("w", "k", timeout=0.1),
        rf"durable\.aio\.get_event {IN_SYNC_WORKFLOW}",
    ),
    "send": (lambda: durable.aio.send("w", 1, "t"), rf"durable\.aio\.send {IN_SYNC_WORKFLOW}"),
    "recv": (lambda: durable.aio.recv("t", timeout=0.1), rf"durable\.aio\.recv {IN_SYNC_WORKFLOW}"),
    "sleep": (lambda: durable.aio.sleep(0.01), rf"durable\.aio\.sleep {IN_SYNC_WORKFLOW}"),
    "run_step": (
        lambda: durable.aio.run_step(mark, "x"),
        rf"durable\.aio\.run_step {IN_SYNC_WORKFLOW}",
    ),
    "async_step": (lambda: amark("x"), r"is async def, called in a sync workflow"),
    "call_async_workflow": (lambda: adouble(1), IN_SYNC_WORKFLOW),
    "start": (
        lambda: durable.aio.start_workflow(adouble, 1),
        rf"durable\.aio\.start_workflow {IN_SYNC_WORKFLOW}",
    ),
    "enqueue": (lambda: durable.aio.enqueue(durable.Queue("q"), adouble, 1), IN_SYNC_WORKFLOW),
}


@pytest.mark.parametrize("case", sorted(IN_SYNC))
def test_an_async_op_in_a_sync_workflow_raises_durable_error(
    sdk: None, pool: ThreadPoolExecutor, case: str
) -> None:
    op, message = IN_SYNC[case]

    @durable.workflow(name=f"aio_tests.mismatch.in_sync.{case}")
    def mismatched() -> None:
        op()

    workflow_id = new_id("in-sync")

    def run() -> None:
        with durable.set_workflow_id(workflow_id):
            mismatched()

    with pytest.raises(durable.DurableError, match=message):
        pool.submit(run).result(timeout=10)  # bounded: a hang fails here
    assert durable.get_workflow(workflow_id).status is durable.WorkflowStatus.ERROR


def test_starting_a_workflow_through_the_other_faces_api_is_refused(aio: None, sdk: None) -> None:
    with pytest.raises(durable.DurableError, match=r"async def: start it with"):
        durable.start_workflow(adouble, 1)

    async def start_sync() -> None:
        await durable.aio.start_workflow(double, 1)

    with pytest.raises(durable.DurableError, match=r"plain function: start it with"):
        arun(start_sync(), timeout=10)


def test_a_stopped_async_worker_hands_an_unfinished_workflow_to_another(aio: None) -> None:
    queue = durable.Queue(new_id("handover"))
    label = new_id("handover")
    one, two, three = f"{label}-1", f"{label}-2", f"{label}-3"

    async def main() -> tuple[bool, list[durable.StepInfo], list[str], str, str]:
        first = durable.aio.Worker([apipeline], queues=[queue], lease_seconds=LEASE)
        await first.start()
        with durable.aio.set_workflow_id(label):
            handle = await durable.aio.enqueue(queue, apipeline, label)
        await until(lambda: count(two) == 1)  # step 2 is in flight, held
        # Its grace period passes while step 2 is held: the run is cancelled mid-step.
        finished_all = await first.stop(timeout=0.2)
        steps = await durable.aio.list_steps(label)
        gates[two].set()
        async with durable.aio.Worker([apipeline], queues=[queue], lease_seconds=LEASE) as second:
            outcome = await handle.result(timeout=WAIT)
        info = await durable.aio.get_workflow(label)
        assert info.executor_id is not None
        return finished_all, steps, outcome, info.executor_id, second.executor_id

    finished_all, steps, outcome, executor, second = arun(main(), timeout=WAIT + 10)
    assert not finished_all
    assert [s.output for s in steps] == [one]  # the cancelled step was not recorded
    assert outcome == [one, two, three]
    assert executor == second
    assert counts(one, two, three) == [1, 2, 1]


@durable.step(name="tests.async.plain_sends")
def plain_sends(destination: str) -> str:
    # A plain step of an async workflow runs in the step pool: the sync face's calls work
    # there as outside workflows, through the sync default client.
    durable.send(destination, "from a plain step", topic="inbox")
    return "sent"


@durable.step(name="tests.async.async_sends")
async def async_sends(destination: str) -> str:
    await durable.aio.send(destination, "from an async step", topic="inbox")
    return "sent"


@durable.workflow(name="tests.async.sends_from_steps")
async def sends_from_steps(destination: str) -> list[str]:
    return [
        await durable.aio.run_step(plain_sends, destination),
        await async_sends(destination),
    ]


def test_sends_from_inside_steps_of_an_async_workflow_are_delivered(
    aio: None, sdk: None, coordinator: Coordinator
) -> None:
    destination = new_id("inbox")

    async def main() -> list[Any]:
        handle = await durable.aio.start_workflow(sends_from_steps, destination)
        assert await handle.result(timeout=WAIT) == ["sent", "sent"]
        return [(info.kind, info.name) for info in await durable.aio.list_steps(handle.workflow_id)]

    assert arun(main()) == [
        ("step", "tests.async.plain_sends"),
        ("step", "tests.async.async_sends"),
    ]

    @durable.workflow(name="tests.async.inbox")
    def inbox() -> list[Any]:
        return [durable.recv("inbox", timeout=5), durable.recv("inbox", timeout=5)]

    with durable.set_workflow_id(destination):
        assert sorted(inbox()) == ["from a plain step", "from an async step"]


@durable.workflow(name="tests.async.trivial")
async def trivial(i: int) -> int:
    return i


def test_a_thousand_concurrent_starts_share_a_handful_of_stream_messages(
    aio: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every task's calls go through the loop's one Session stream: what is queued while a
    message is being written goes out together in the next."""
    sent: list[batching.Batch] = []

    class Counted(batching.Batch):
        def __init__(self, first: Any) -> None:
            super().__init__(first)
            sent.append(self)

    monkeypatch.setattr(batching, "Batch", Counted)

    async def main() -> list[int]:
        handles = await asyncio.gather(
            *(durable.aio.start_workflow(trivial, i) for i in range(1000))
        )
        return list(await asyncio.gather(*(h.result(timeout=WAIT) for h in handles)))

    assert arun(main()) == list(range(1000))
    starts = [sum(call.HasField("start_workflow") for call in b.message.calls) for b in sent]
    assert sum(starts) == 1000
    assert len([n for n in starts if n]) <= 10, starts
