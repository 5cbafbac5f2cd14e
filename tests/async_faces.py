"""The same workflows written once per face of the SDK, and a runner per face that drives
them as that face's user would, blocking until each call is done: so that one test body
(tests/test_async_sdk.py) states what a user sees on either face.

The sync face calls `durable.*` from the test's thread. The async face runs on an event
loop of its own thread (`asyncio.run` there), awaiting `durable.aio.*`; a test body can so
run a workflow, follow its events from another thread and manage it at once.

Steps log their side effects to `effects`, so "ran once" and "did not run again" are
counted, not assumed. A simulated crash is a `Crash` (a BaseException, so nothing records
it) raised by a step whose label is in `crash_at`; a held step waits for its label's gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ClassVar, Protocol, TypeVar

import durable
import durable.aio
from durable._aio.client import default_client

T = TypeVar("T")

# Bounds every wait on a workflow in these tests.
WAIT = 30.0
LEASE = 2.0


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing records it."""


# Labels, one per run of a step body (both faces append here).
effects: list[str] = []
# Labels whose step raises Crash after logging its side effect.
crash_at: set[str] = set()
# Held steps wait on their label's gate (a threading.Event works across threads and loops).
gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# What `publish` sets its event to: a test changes it between a run and its replay.
published: dict[str, str] = {}


def count(label: str) -> int:
    return effects.count(label)


def counts(*labels: str) -> list[int]:
    return [count(label) for label in labels]


def side_effect(label: str) -> str:
    effects.append(label)
    if label in crash_at:
        raise Crash(label)
    return label


FAST_RETRY = durable.StepRetry(
    max_attempts=3, initial_backoff_seconds=0.01, jitter=0, retry_on=(TimeoutError,)
)


def flaky_attempt(label: str) -> str:
    effects.append(label)
    attempt = count(label)
    if attempt < 3:
        raise TimeoutError(f"attempt {attempt} timed out")
    return f"ok after {attempt}"


# --- the sync face's workflows -------------------------------------------------------------


@durable.step(name="aio_tests.sync.mark")
def mark(label: str) -> str:
    return side_effect(label)


@durable.step(name="aio_tests.sync.other")
def other(label: str) -> str:
    return side_effect(label)


@durable.step(name="aio_tests.sync.held")
def held(label: str) -> str:
    effects.append(label)
    assert gates[label].wait(timeout=WAIT), f"gate {label} never opened"
    return label


@durable.step(name="aio_tests.sync.flaky", retry=FAST_RETRY)
def flaky(label: str) -> str:
    return flaky_attempt(label)


@durable.step(name="aio_tests.sync.picky", retry=FAST_RETRY)
def picky(label: str) -> str:
    effects.append(label)
    raise ValueError("not worth retrying")


# The step errors `fail` raises, by name.
ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "KeyError": KeyError}


@durable.step(name="aio_tests.sync.fail")
def fail(error: str, label: str) -> None:
    effects.append(label)
    raise ERRORS[error](label)


@durable.workflow(name="aio_tests.sync.catches")
def catches(error: str, label: str) -> list[str]:
    try:
        fail(error, label)
    except Exception as exc:
        caught = [type(exc).__name__, str(exc)]
    mark(f"{label}-after")
    return caught


@durable.workflow(name="aio_tests.sync.progress")
def progress(label: str) -> str:
    durable.set_event("progress", 0)
    mark(f"{label}-one")
    durable.set_event("progress", 50)
    mark(f"{label}-two")
    durable.set_event("progress", 100)
    mark(f"{label}-three")
    return "done"


@durable.workflow(name="aio_tests.sync.progress")
def progress_v2(label: str) -> str:
    durable.set_event("progress", 0)
    other(f"{label}-one")  # was mark(label-one)
    return "v2"


@durable.workflow(name="aio_tests.sync.publish")
def publish(label: str) -> str:
    durable.set_event("value", published[label])
    mark(label)
    return published[label]


@durable.workflow(name="aio_tests.sync.reads")
def reads(source: str, label: str) -> Any:
    value = durable.get_event(source, "progress", timeout=5)
    mark(label)
    return value


@durable.workflow(name="aio_tests.sync.collect")
def collect(timeouts: list[float]) -> list[Any]:
    return [durable.recv("orders", timeout=t) for t in timeouts]


@durable.workflow(name="aio_tests.sync.relay")
def relay(destination: str, label: str) -> str:
    durable.send(destination, f"ping from {durable.current_workflow_id()}", "orders")
    mark(label)
    return "sent"


@durable.workflow(name="aio_tests.sync.nap")
def nap(seconds: float, label: str) -> str:
    durable.sleep(seconds)
    mark(label)
    return "rested"


@durable.workflow(name="aio_tests.sync.double")
def double(n: int) -> int:
    mark(f"double-{durable.current_workflow_id()}")
    return n * 2


@durable.workflow(name="aio_tests.sync.parent")
def parent(n: int, label: str) -> list[Any]:
    inline = double(n)
    handle = durable.start_workflow(double, n + 1)
    started = handle.result(timeout=WAIT)
    mark(label)
    return [inline, started, handle.workflow_id]


@durable.workflow(name="aio_tests.sync.echo")
def echo(value: Any) -> Any:
    mark(f"echo-{durable.current_workflow_id()}")
    return value


@durable.workflow(name="aio_tests.sync.enqueuer")
def enqueuer(queue_name: str, value: Any) -> list[Any]:
    handle = durable.Queue(queue_name).enqueue(echo, value)
    return [handle.result(timeout=WAIT), handle.workflow_id]


@durable.workflow(name="aio_tests.sync.pipeline")
def pipeline(label: str) -> list[str]:
    return [mark(f"{label}-1"), held(f"{label}-2"), mark(f"{label}-3")]


@durable.workflow(name="aio_tests.sync.retried")
def retried(label: str) -> dict[str, str]:
    result = {"flaky": flaky(f"{label}-flaky")}
    try:
        picky(f"{label}-picky")
    except ValueError as exc:
        result["picky"] = str(exc)
    mark(f"{label}-after")
    return result


SYNC_WORKFLOWS: dict[str, Callable[..., Any]] = {
    "progress": progress,
    "progress_v2": progress_v2,
    "publish": publish,
    "reads": reads,
    "collect": collect,
    "relay": relay,
    "nap": nap,
    "double": double,
    "parent": parent,
    "echo": echo,
    "enqueuer": enqueuer,
    "pipeline": pipeline,
    "retried": retried,
    "catches": catches,
}


# --- the async face's workflows ------------------------------------------------------------


@durable.step(name="aio_tests.async.mark")
async def amark(label: str) -> str:
    await asyncio.sleep(0)
    return side_effect(label)


@durable.step(name="aio_tests.async.other")
async def aother(label: str) -> str:
    return side_effect(label)


@durable.step(name="aio_tests.async.held")
async def aheld(label: str) -> str:
    effects.append(label)
    deadline = time.monotonic() + WAIT
    while not gates[label].is_set():
        assert time.monotonic() < deadline, f"gate {label} never opened"
        await asyncio.sleep(0.01)
    return label


@durable.step(name="aio_tests.async.flaky", retry=FAST_RETRY)
async def aflaky(label: str) -> str:
    return flaky_attempt(label)


@durable.step(name="aio_tests.async.picky", retry=FAST_RETRY)
async def apicky(label: str) -> str:
    effects.append(label)
    raise ValueError("not worth retrying")


@durable.step(name="aio_tests.async.fail")
async def afail(error: str, label: str) -> None:
    effects.append(label)
    raise ERRORS[error](label)


@durable.workflow(name="aio_tests.async.catches")
async def acatches(error: str, label: str) -> list[str]:
    try:
        await afail(error, label)
    except Exception as exc:
        caught = [type(exc).__name__, str(exc)]
    await amark(f"{label}-after")
    return caught


@durable.workflow(name="aio_tests.async.progress")
async def aprogress(label: str) -> str:
    await durable.aio.set_event("progress", 0)
    await amark(f"{label}-one")
    await durable.aio.set_event("progress", 50)
    await amark(f"{label}-two")
    await durable.aio.set_event("progress", 100)
    await amark(f"{label}-three")
    return "done"


@durable.workflow(name="aio_tests.async.progress")
async def aprogress_v2(label: str) -> str:
    await durable.aio.set_event("progress", 0)
    await aother(f"{label}-one")  # was amark(label-one)
    return "v2"


@durable.workflow(name="aio_tests.async.publish")
async def apublish(label: str) -> str:
    await durable.aio.set_event("value", published[label])
    await amark(label)
    return published[label]


@durable.workflow(name="aio_tests.async.reads")
async def areads(source: str, label: str) -> Any:
    value = await durable.aio.get_event(source, "progress", timeout=5)
    await amark(label)
    return value


@durable.workflow(name="aio_tests.async.collect")
async def acollect(timeouts: list[float]) -> list[Any]:
    return [await durable.aio.recv("orders", timeout=t) for t in timeouts]


@durable.workflow(name="aio_tests.async.relay")
async def arelay(destination: str, label: str) -> str:
    await durable.aio.send(destination, f"ping from {durable.current_workflow_id()}", "orders")
    await amark(label)
    return "sent"


@durable.workflow(name="aio_tests.async.nap")
async def anap(seconds: float, label: str) -> str:
    await durable.aio.sleep(seconds)
    await amark(label)
    return "rested"


@durable.workflow(name="aio_tests.async.double")
async def adouble(n: int) -> int:
    await amark(f"double-{durable.current_workflow_id()}")
    return n * 2


@durable.workflow(name="aio_tests.async.parent")
async def aparent(n: int, label: str) -> list[Any]:
    inline = await adouble(n)
    handle = await durable.aio.start_workflow(adouble, n + 1)
    started = await handle.result(timeout=WAIT)
    await amark(label)
    return [inline, started, handle.workflow_id]


@durable.workflow(name="aio_tests.async.echo")
async def aecho(value: Any) -> Any:
    await amark(f"echo-{durable.current_workflow_id()}")
    return value


@durable.workflow(name="aio_tests.async.enqueuer")
async def aenqueuer(queue_name: str, value: Any) -> list[Any]:
    handle = await durable.aio.enqueue(durable.Queue(queue_name), aecho, value)
    return [await handle.result(timeout=WAIT), handle.workflow_id]


@durable.workflow(name="aio_tests.async.pipeline")
async def apipeline(label: str) -> list[str]:
    return [await amark(f"{label}-1"), await aheld(f"{label}-2"), await amark(f"{label}-3")]


@durable.workflow(name="aio_tests.async.retried")
async def aretried(label: str) -> dict[str, str]:
    result = {"flaky": await aflaky(f"{label}-flaky")}
    try:
        await apicky(f"{label}-picky")
    except ValueError as exc:
        result["picky"] = str(exc)
    await amark(f"{label}-after")
    return result


ASYNC_WORKFLOWS: dict[str, Callable[..., Any]] = {
    "progress": aprogress,
    "progress_v2": aprogress_v2,
    "publish": apublish,
    "reads": areads,
    "collect": acollect,
    "relay": arelay,
    "nap": anap,
    "double": adouble,
    "parent": aparent,
    "echo": aecho,
    "enqueuer": aenqueuer,
    "pipeline": apipeline,
    "retried": aretried,
    "catches": acatches,
}


# --- the faces: one runner each ------------------------------------------------------------


class Handle(Protocol):
    """What a test needs of a started workflow, on either face."""

    @property
    def workflow_id(self) -> str: ...

    def result(self, timeout: float | None = None) -> Any: ...

    def status(self) -> durable.WorkflowStatus: ...


class Face(Protocol):
    """Runs the face's workflows (by kind) and management calls, blocking until done."""

    name: str

    def run(self, kind: str, workflow_id: str, *args: Any) -> Any:
        """Call the workflow under `workflow_id`: it runs here, to its end."""

    def start(
        self, kind: str, workflow_id: str, *args: Any, timeout: float | None = None
    ) -> Handle:
        """Start the workflow in the background (with a workflow timeout, if given)."""

    def enqueue(self, queue: durable.Queue, kind: str, *args: Any) -> Handle: ...

    def retrieve(self, workflow_id: str) -> Handle: ...

    def worker(
        self, kinds: list[str], queues: list[durable.Queue] | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """A started worker for these workflows; yields its executor ID."""

    def get_event(self, workflow_id: str, key: str, timeout: float) -> Any: ...

    def watch(self, workflow_id: str, key: str, timeout: float, seen: list[Any]) -> None:
        """Follow the event, appending each value to `seen` as it comes."""

    def send(self, destination: str, message: Any, topic: str) -> None: ...

    def get_workflow(self, workflow_id: str) -> durable.WorkflowInfo: ...

    def list_steps(self, workflow_id: str) -> list[durable.StepInfo]: ...

    def list_events(self, workflow_id: str) -> dict[str, Any]: ...

    def children(self, workflow_id: str) -> list[durable.WorkflowInfo]: ...

    def cancel(self, workflow_id: str) -> durable.WorkflowInfo: ...

    def resume(self, workflow_id: str) -> durable.WorkflowInfo: ...

    def fork(self, workflow_id: str, start_step: int) -> Handle: ...


class SyncFace:
    """The sync face: `durable.*`, called from the test's thread."""

    name = "sync"
    workflows: ClassVar[dict[str, Callable[..., Any]]] = SYNC_WORKFLOWS

    def run(self, kind: str, workflow_id: str, *args: Any) -> Any:
        with durable.set_workflow_id(workflow_id):
            return self.workflows[kind](*args)

    def start(
        self, kind: str, workflow_id: str, *args: Any, timeout: float | None = None
    ) -> Handle:
        with contextlib.ExitStack() as stack:
            stack.enter_context(durable.set_workflow_id(workflow_id))
            if timeout is not None:
                stack.enter_context(durable.set_workflow_timeout(timeout))
            return durable.start_workflow(self.workflows[kind], *args)

    def enqueue(self, queue: durable.Queue, kind: str, *args: Any) -> Handle:
        return queue.enqueue(self.workflows[kind], *args)

    def retrieve(self, workflow_id: str) -> Handle:
        return durable.retrieve_workflow(workflow_id)

    @contextlib.contextmanager
    def worker(self, kinds: list[str], queues: list[durable.Queue] | None = None) -> Iterator[str]:
        flows = [self.workflows[kind] for kind in kinds]
        with durable.Worker(flows, queues=queues or [], lease_seconds=LEASE) as worker:
            yield worker.executor_id

    def get_event(self, workflow_id: str, key: str, timeout: float) -> Any:
        return durable.get_event(workflow_id, key, timeout=timeout)

    def watch(self, workflow_id: str, key: str, timeout: float, seen: list[Any]) -> None:
        for value in durable.watch_event(workflow_id, key, timeout=timeout):
            seen.append(value)

    def send(self, destination: str, message: Any, topic: str) -> None:
        durable.send(destination, message, topic)

    def get_workflow(self, workflow_id: str) -> durable.WorkflowInfo:
        return durable.get_workflow(workflow_id)

    def list_steps(self, workflow_id: str) -> list[durable.StepInfo]:
        return durable.list_steps(workflow_id)

    def list_events(self, workflow_id: str) -> dict[str, Any]:
        return durable.list_events(workflow_id)

    def children(self, workflow_id: str) -> list[durable.WorkflowInfo]:
        return list(durable.list_workflows(parent_workflow_id=workflow_id))

    def cancel(self, workflow_id: str) -> durable.WorkflowInfo:
        return durable.cancel_workflow(workflow_id)

    def resume(self, workflow_id: str) -> durable.WorkflowInfo:
        return durable.resume_workflow(workflow_id)

    def fork(self, workflow_id: str, start_step: int) -> Handle:
        return durable.fork_workflow(workflow_id, start_step)


class EventLoopThread:
    """An event loop run by `asyncio.run` in a thread of its own; `call` runs a coroutine
    on it and blocks for the outcome. Its default durable.aio client closes with it."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(timeout=10), "event loop thread did not start"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await default_client().close()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = WAIT + 10) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


class AsyncHandle:
    """An AsyncWorkflowHandle, awaited on the face's loop."""

    def __init__(self, loop: EventLoopThread, handle: durable.aio.AsyncWorkflowHandle[Any]):
        self._loop = loop
        self._handle = handle
        self.workflow_id = handle.workflow_id

    def result(self, timeout: float | None = None) -> Any:
        return self._loop.call(self._handle.result(timeout))

    def status(self) -> durable.WorkflowStatus:
        return self._loop.call(self._handle.status())


class AsyncFace:
    """The async face: `durable.aio.*`, awaited on an event loop of its own thread."""

    name = "async"
    workflows: ClassVar[dict[str, Callable[..., Any]]] = ASYNC_WORKFLOWS

    def __init__(self) -> None:
        self.loop = EventLoopThread()

    def close(self) -> None:
        self.loop.close()

    def _handle(self, handle: durable.aio.AsyncWorkflowHandle[Any]) -> AsyncHandle:
        return AsyncHandle(self.loop, handle)

    def run(self, kind: str, workflow_id: str, *args: Any) -> Any:
        async def run() -> Any:
            with durable.aio.set_workflow_id(workflow_id):
                return await self.workflows[kind](*args)

        return self.loop.call(run())

    def start(
        self, kind: str, workflow_id: str, *args: Any, timeout: float | None = None
    ) -> Handle:
        async def start() -> durable.aio.AsyncWorkflowHandle[Any]:
            with contextlib.ExitStack() as stack:
                stack.enter_context(durable.aio.set_workflow_id(workflow_id))
                if timeout is not None:
                    stack.enter_context(durable.aio.set_workflow_timeout(timeout))
                return await durable.aio.start_workflow(self.workflows[kind], *args)

        return self._handle(self.loop.call(start()))

    def enqueue(self, queue: durable.Queue, kind: str, *args: Any) -> Handle:
        async def enqueue() -> durable.aio.AsyncWorkflowHandle[Any]:
            return await durable.aio.enqueue(queue, self.workflows[kind], *args)

        return self._handle(self.loop.call(enqueue()))

    def retrieve(self, workflow_id: str) -> Handle:
        return self._handle(self.loop.call(durable.aio.retrieve_workflow(workflow_id)))

    @contextlib.contextmanager
    def worker(self, kinds: list[str], queues: list[durable.Queue] | None = None) -> Iterator[str]:
        async def started() -> durable.aio.Worker:
            flows = [self.workflows[kind] for kind in kinds]
            worker = durable.aio.Worker(flows, queues=queues or [], lease_seconds=LEASE)
            await worker.start()
            return worker

        worker = self.loop.call(started())
        try:
            yield worker.executor_id
        finally:
            self.loop.call(worker.stop(timeout=10))

    def get_event(self, workflow_id: str, key: str, timeout: float) -> Any:
        async def get() -> Any:
            return await durable.aio.get_event(workflow_id, key, timeout=timeout)

        return self.loop.call(get())

    def watch(self, workflow_id: str, key: str, timeout: float, seen: list[Any]) -> None:
        async def watch() -> None:
            async for value in durable.aio.watch_event(workflow_id, key, timeout=timeout):
                seen.append(value)

        self.loop.call(watch())

    def send(self, destination: str, message: Any, topic: str) -> None:
        async def send() -> None:
            await durable.aio.send(destination, message, topic)

        self.loop.call(send())

    def get_workflow(self, workflow_id: str) -> durable.WorkflowInfo:
        return self.loop.call(durable.aio.get_workflow(workflow_id))

    def list_steps(self, workflow_id: str) -> list[durable.StepInfo]:
        return self.loop.call(durable.aio.list_steps(workflow_id))

    def list_events(self, workflow_id: str) -> dict[str, Any]:
        return self.loop.call(durable.aio.list_events(workflow_id))

    def children(self, workflow_id: str) -> list[durable.WorkflowInfo]:
        async def children() -> list[durable.WorkflowInfo]:
            return [w async for w in durable.aio.list_workflows(parent_workflow_id=workflow_id)]

        return self.loop.call(children())

    def cancel(self, workflow_id: str) -> durable.WorkflowInfo:
        return self.loop.call(durable.aio.cancel_workflow(workflow_id))

    def resume(self, workflow_id: str) -> durable.WorkflowInfo:
        return self.loop.call(durable.aio.resume_workflow(workflow_id))

    def fork(self, workflow_id: str, start_step: int) -> Handle:
        return self._handle(self.loop.call(durable.aio.fork_workflow(workflow_id, start_step)))


def kinds_and_names(steps: list[durable.StepInfo]) -> list[tuple[str, str]]:
    return [(str(s.kind), s.name) for s in steps]
