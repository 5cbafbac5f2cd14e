"""The async worker: runs `async def` workflows for the coordinator as tasks of one event
loop, thousands at a time, with the same sessions, leases, claims, fencing, queues and
recovery as `durable.Worker` (whose docstring explains them); see `Worker` for what
differs.

    worker = durable.aio.Worker([checkout], name="pod-7")
    await worker.run()                  # until SIGTERM or SIGINT

or `async with durable.aio.Worker([...]):` inside an application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from durable import _running, _session
from durable._aio import drive
from durable._aio.client import AsyncClient, default_client
from durable._aio.workflows import execute
from durable._core import versions, work
from durable._core.durations import Seconds, optional_seconds, seconds
from durable._core.specs import Started, WorkflowSpec
from durable._queues import Queue, queue_names
from durable._worker import log_run_end
from durable.errors import CoordinatorUnavailableError, DurableError
from durable.v1 import coordinator_pb2 as pb

log = logging.getLogger("durable.worker")


class Worker:
    """Runs the given `async def` workflows for the coordinator, recovering those of dead
    workers; arguments as for `durable.Worker`, with `max_concurrent` (default 1,000)
    workflows running at once as tasks of the event loop the worker starts on.

    Each claimed workflow is one task: an idle workflow (sleeping, waiting for a message
    or an event) costs a task and its frames, not a thread. Plain steps called through
    `durable.aio.run_step` run in a bounded thread pool (`DURABLE_STEP_THREADS`).

    `stop(timeout)` stops claiming, lets the running workflows go on for up to `timeout`
    seconds (steps in flight finish and are recorded), then cancels those still running
    and cuts the lease to the minimum, so another worker continues them from their last
    recorded step: a step cancelled mid-way was not recorded and runs again there.
    """

    def __init__(
        self,
        workflows: Iterable[Callable[..., Any]] = (),
        *,
        name: str | None = None,
        lease_seconds: Seconds = 10.0,
        max_concurrent: int = 1000,
        queues: Iterable[Queue] = (),
        client: AsyncClient | None = None,
        app_version: str | None = None,
    ) -> None:
        lease_seconds = seconds(lease_seconds)
        self._specs = work.worker_specs(workflows, lease_seconds, max_concurrent, is_async=True)
        # The code version it runs: only workflows of this version (or none) come here.
        self.app_version = versions.resolve(app_version, self._specs.values())
        self.executor_id = str(uuid.uuid4())
        self.name = name or ""
        self.lease_seconds = float(lease_seconds)
        self.max_concurrent = max_concurrent
        self._queues = list(queues)
        self._queue_names = queue_names(self._queues)
        self._given_client = client
        self._client: AsyncClient | None = None
        self._state = "new"  # -> "started" -> "stopped"
        self._running: dict[asyncio.Task[None], str] = {}  # -> workflow ID
        self._slot_freed = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._lease_until = 0.0

    @property
    def label(self) -> str:
        return self.name or self.executor_id

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Register (the first heartbeat; its errors are raised) and start heartbeating
        and claiming work in tasks of the running loop."""
        if self._state != "new":
            raise DurableError("a Worker is one session: it starts once")
        self._state = "started"
        self._client = self._given_client or default_client()
        try:
            for queue in self._queues:
                await self._client.configure_queue(queue._config)
            for schedule in work.declared_schedules(self._specs):
                await self._client.set_schedule(schedule)
            await self._heartbeat(self.lease_seconds)
        except BaseException:
            self._state = "new"
            raise
        _session.register(self.executor_id, self._client, self.app_version)
        self._background = [
            asyncio.create_task(self._heartbeat_loop(), name=f"durable-heartbeat-{self.label}"),
            asyncio.create_task(self._poll_loop(), name=f"durable-poll-{self.label}"),
        ]
        log.info(
            "async worker %s started (session %s, lease %gs): %s",
            self.name or "(unnamed)",
            self.executor_id,
            self.lease_seconds,
            ", ".join(sorted(self._specs)) or "no workflow names",
        )

    async def stop(self, timeout: Seconds | None = 30.0) -> bool:
        """Stop claiming, let running workflows go on for up to `timeout` seconds (None:
        no limit), then hand those left to other workers. Returns True if none was left."""
        if self._state != "started":
            self._state = "stopped"
            return True
        self._state = "stopped"
        heartbeats, poll = self._background
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=optional_seconds(timeout))
        leftover = {task: self._running[task] for task in running if not task.done()}
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        heartbeats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeats
        if leftover:
            log.warning(
                "worker %s stopped with %d workflows still running; other workers will"
                " recover them: %s",
                self.label,
                len(leftover),
                ", ".join(sorted(leftover.values())),
            )
            # Hand them over soon rather than a whole lease from now.
            with contextlib.suppress(DurableError):
                await self._heartbeat(work.MIN_LEASE_SECONDS)
        _session.unregister(self.executor_id)
        log.info("worker %s stopped", self.label)
        return not leftover

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, shutdown_timeout: Seconds | None = 30.0) -> None:
        """Start (unless started), run until SIGTERM or SIGINT, then
        `stop(shutdown_timeout)`. For a dedicated worker process's main loop."""
        loop = asyncio.get_running_loop()
        received = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, received.set)
        try:
            if self._state == "new":
                await self.start()
            await received.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        log.info("worker %s: signal received, stopping", self.label)
        await self.stop(shutdown_timeout)

    # --- heartbeats ------------------------------------------------------------------------

    async def _heartbeat(self, lease: float) -> None:
        assert self._client is not None
        sent = time.monotonic()
        await self._client.heartbeat(
            self.executor_id,
            self.name,
            sorted(self._specs),
            lease,
            self._queue_names,
            self.app_version,
        )
        if self._lease_until and sent > self._lease_until:
            log.warning(
                "worker %s: lease lapsed %.1fs ago and is renewed; workflows taken over"
                " meanwhile stop running here at their next write",
                self.label,
                sent - self._lease_until,
            )
        self._lease_until = sent + lease

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat(self.lease_seconds)
            except DurableError as exc:
                log.warning("worker %s: heartbeat failed: %s", self.label, exc)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.label)

    # --- claiming --------------------------------------------------------------------------

    async def _free_slots(self) -> int:
        while len(self._running) >= self.max_concurrent:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return self.max_concurrent - len(self._running)

    async def _poll_loop(self) -> None:
        assert self._client is not None
        # After a failed poll the coordinator may have claimed workflows for this session
        # whose reply never arrived: look for them before polling again.
        maybe_stranded = False
        while True:
            free = await self._free_slots()
            if maybe_stranded:
                maybe_stranded = not await self._adopt_stranded()
                free = await self._free_slots()
            try:
                claimed = await self._client.poll_work(
                    self.executor_id, min(free, work.MAX_CLAIM), work.POLL_WAIT_SECONDS
                )
            except Exception as exc:
                # E.g. LEASE_EXPIRED after heartbeats failed: renew, then poll again.
                log.warning("worker %s: poll failed: %s", self.label, exc)
                maybe_stranded = True
                with contextlib.suppress(DurableError):
                    await self._heartbeat(self.lease_seconds)
                await asyncio.sleep(work.ERROR_PAUSE_SECONDS)
                continue
            for workflow in claimed:
                self._launch(workflow)

    async def _adopt_stranded(self) -> bool:
        """Run the PENDING workflows of this session that nothing here runs. Returns False
        if the search failed."""
        assert self._client is not None

        def runs_here(workflow_id: str) -> bool:
            return workflow_id in self._running.values() or _running.running_here(workflow_id)

        try:
            search = work.stranded(self.executor_id, self._specs, runs_here)
            found = await drive.run(search, self._client)
        except DurableError as exc:
            log.warning("worker %s: cannot look for stranded work: %s", self.label, exc)
            return False
        for workflow in found:
            self._launch(workflow)
        return True

    def _launch(self, workflow: pb.Workflow) -> None:
        spec = work.claimed_spec(self._specs, workflow)
        if spec is None:
            return
        task = asyncio.create_task(
            self._run_until_settled(workflow, spec), name=f"workflow-{workflow.workflow_id}"
        )
        self._running[task] = workflow.workflow_id
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._slot_freed.set()

    # --- running ---------------------------------------------------------------------------

    async def _run_until_settled(self, workflow: pb.Workflow, spec: WorkflowSpec) -> None:
        """Run a claimed workflow; while the coordinator is unreachable, try again later
        for as long as the workflow is still this worker's."""
        assert self._client is not None
        workflow_id = workflow.workflow_id
        pause = work.ERROR_PAUSE_SECONDS
        while True:
            try:
                reply = await self._client.start_workflow(
                    workflow_id, workflow.name, workflow.input, executor_id=self.executor_id
                )
                await execute(self._client, spec, Started(reply, self.executor_id))
                log.info("workflow %s finished", workflow_id)
                return
            except Exception as exc:
                end = work.run_end(exc)
                if end is not work.RunEnd.UNAVAILABLE:
                    log_run_end(workflow_id, end, exc)
                    return
                log.warning("workflow %s: coordinator unavailable (%s)", workflow_id, exc)
                await asyncio.sleep(pause)
                if not await self._still_mine(workflow_id):
                    return
                pause = min(pause * 2, work.MAX_ERROR_PAUSE_SECONDS)

    async def _still_mine(self, workflow_id: str) -> bool:
        assert self._client is not None
        try:
            return (await self._client.get_workflow(workflow_id)).executor_id == self.executor_id
        except CoordinatorUnavailableError:
            return True  # cannot tell yet: try again
