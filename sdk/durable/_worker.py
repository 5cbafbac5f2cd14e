"""Workers: processes that run workflows for the coordinator and take over each other's
work when one of them dies.

    worker = durable.Worker([checkout, process_data], name="pod-7", lease_seconds=10)
    worker.run_forever()  # a dedicated worker process: until SIGTERM or SIGINT

or, inside an application, `with durable.Worker([...]):` (start on entry, stop on exit).

How it works
------------
* **Session.** Each Worker is one session with a fresh `executor_id` (a UUID4). `start()`
  registers it with Heartbeat: its stable `name` (optional), the workflow names it can run
  and its lease.
* **Lease = heartbeats.** A thread renews the lease every `lease_seconds / 3`. While the
  lease is live, the workflows the session runs are its own. If the process dies, hangs or
  loses the network, the heartbeats stop and the lease lapses within `lease_seconds`.
  Failed heartbeats are retried at the same cadence; a session that lost its lease gets a
  new one with its next heartbeat, but the workflows taken over meanwhile stay with their
  new workers (below).
* **Claim loop.** Another thread calls PollWork with the number of free slots
  (`max_concurrent` minus the workflows running), and the coordinator claims for it
  ENQUEUED workflows (resumed or forked) and PENDING ones whose worker's lease lapsed. An
  idle PollWork looks for lapsed leases every second, so a dead worker's workflows are
  running again on another worker within about `lease_seconds + 1` seconds of its last
  heartbeat. Each claimed workflow runs in its own thread: StartWorkflow with the
  `executor_id` (taking it over and returning its history), then the replay: recorded
  steps return their outcomes without running, and the workflow continues from the first
  unrecorded step. A step that was running when the worker died runs again (steps run at
  least once and are recorded exactly once).
* **Fencing.** Every write of a run (RunStep, SetEvent, RecordStepAttempt, FinishWorkflow)
  carries the `executor_id`. Once another session has taken the workflow over, the
  coordinator refuses them (NOT_OWNER) and the run stops with WorkflowOwnershipLostError,
  so a zombie (a worker paused past its lease, then resumed) records nothing after its
  successor took over; at most the step it was in repeats its side effect.
* **Restarts.** A worker restarted under the same `name` ends its previous session's lease
  at once and is offered that session's workflows first: it resumes its own work without
  waiting for the old lease to lapse.
* **Cancellation and timeouts** are cooperative: the next write of a cancelled workflow (by
  `cancel_workflow` or its timeout) fails, the run stops with WorkflowCancelledError, and
  no later step starts; the outcome of the step running at that moment is not recorded.
  `resume_workflow` makes it ENQUEUED and a worker continues it from its records.
* **Dead letter.** A workflow whose workers keep dying (more recoveries than the
  coordinator's `--max-recovery-attempts`) goes to DEAD_LETTER instead of to a worker.
* **Stopping.** `stop()` stops claiming, waits for the running workflows (still
  heartbeating, so they stay this worker's), then stops heartbeating. Workflows still
  running when its timeout passes are handed to recovery: the lease is cut to the
  1-second minimum so another worker takes them over promptly.
* **Queues.** A Worker given `queues=[...]` stores each queue's limits (ConfigureQueue)
  when it starts and names the queues in its heartbeats; its PollWork then also claims
  the ENQUEUED workflows of those queues (with the workflow names it runs), within the
  queues' limits. A queued workflow recovered after its worker died goes to any worker
  that runs its name, like any other.
* **Workflows the process starts.** While a Worker is started, `start_workflow` and direct
  workflow calls in the same process (through the same client) run under its session, so
  another worker finishes them if the process dies.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from durable import _drive, _running, _session
from durable._client import Client, default_client
from durable._core import versions, work
from durable._core.durations import Seconds, optional_seconds, seconds
from durable._core.specs import Started, WorkflowSpec
from durable._queues import Queue, queue_names
from durable._workflow import execute, log_stopped
from durable.errors import (
    CoordinatorUnavailableError,
    DurableError,
)
from durable.v1 import coordinator_pb2 as pb

log = logging.getLogger("durable.worker")

MIN_LEASE_SECONDS = work.MIN_LEASE_SECONDS
MAX_LEASE_SECONDS = work.MAX_LEASE_SECONDS
POLL_WAIT_SECONDS = work.POLL_WAIT_SECONDS


class Worker:
    """Runs the given workflows for the coordinator, recovering those of dead workers.

    `workflows`: functions decorated with `@durable.workflow`; the worker runs workflows
    with their names. `name`: a stable name for this worker (e.g. the pod or host name)
    so that a restart resumes its own work at once; unique per live process. `lease_seconds`
    (1-600): how long after its last heartbeat a silent worker's workflows go to others.
    `max_concurrent`: the most claimed workflows run at once. `queues`: the `durable.Queue`s
    whose workflows this worker runs (their limits are stored when it starts). `client`:
    the coordinator connection (default: the SDK's default client).
    """

    def __init__(
        self,
        workflows: Iterable[Callable[..., Any]] = (),
        *,
        name: str | None = None,
        lease_seconds: Seconds = 10.0,
        max_concurrent: int = 16,
        queues: Iterable[Queue] = (),
        client: Client | None = None,
        app_version: str | None = None,
    ) -> None:
        lease_seconds = seconds(lease_seconds)
        specs = work.worker_specs(workflows, lease_seconds, max_concurrent, is_async=False)
        # The code version it runs: only workflows of this version (or none) come here.
        self.app_version = versions.resolve(app_version, specs.values())
        self.executor_id = str(uuid.uuid4())
        self.name = name or ""
        self.lease_seconds = float(lease_seconds)
        self.max_concurrent = max_concurrent
        self._specs = specs
        self._queues = list(queues)
        self._queue_names = queue_names(self._queues)
        self._given_client = client
        self._client: Client | None = None
        self._lock = threading.Condition()
        self._state = "new"  # -> "started" -> "stopped"
        self._running: dict[threading.Thread, str] = {}  # -> workflow ID
        self._stopping = threading.Event()
        self._heartbeats_end = threading.Event()
        self._poll_interrupt = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lease_until = 0.0  # monotonic time the lease lapses, as far as we know

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Register (the first heartbeat; its errors are raised) and start heartbeating
        and claiming work in background threads."""
        with self._lock:
            if self._state != "new":
                raise DurableError("a Worker is one session: it starts once")
            self._state = "started"
        self._client = self._given_client or default_client()
        try:
            for queue in self._queues:
                queue.configure(client=self._client)
            for schedule in work.declared_schedules(self._specs):
                self._client.set_schedule(schedule)
            self._heartbeat(self.lease_seconds)
        except BaseException:
            with self._lock:
                self._state = "new"
            raise
        _session.register(self.executor_id, self._client, self.app_version)
        for target, label in ((self._heartbeat_loop, "heartbeat"), (self._poll_loop, "poll")):
            thread = threading.Thread(
                target=target, name=f"durable-worker-{label}-{self.executor_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        log.info(
            "worker %s started (session %s, lease %gs): %s",
            self.name or "(unnamed)",
            self.executor_id,
            self.lease_seconds,
            ", ".join(sorted(self._specs)) or "no workflow names",
        )

    def stop(self, timeout: Seconds | None = 30.0) -> bool:
        """Stop claiming work, wait up to `timeout` seconds (None: no limit) for the running
        workflows, then stop heartbeating. Returns True if none was left running; those left
        are recovered by other workers (their runs here stop at their next write)."""
        with self._lock:
            if self._state != "started":
                self._state = "stopped"
                return True
            self._state = "stopped"
            self._stopping.set()
            self._poll_interrupt.set()
            self._lock.notify_all()
        timeout = optional_seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        poll_thread, heartbeat_thread = self._threads[1], self._threads[0]
        poll_thread.join(left())
        with self._lock:
            while self._running and left() != 0.0:
                self._lock.wait(left())
            leftover = sorted(self._running.values())
        self._heartbeats_end.set()
        heartbeat_thread.join(min(5.0, self.lease_seconds))
        if leftover:
            log.warning(
                "worker %s stopped with %d workflows still running; other workers will"
                " recover them: %s",
                self.name or self.executor_id,
                len(leftover),
                ", ".join(leftover),
            )
            if not heartbeat_thread.is_alive():
                # Hand them over soon rather than a whole lease from now.
                with contextlib.suppress(DurableError):
                    self._heartbeat(MIN_LEASE_SECONDS)
        _session.unregister(self.executor_id)
        log.info("worker %s stopped", self.name or self.executor_id)
        return not leftover

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    def run_forever(self, shutdown_timeout: Seconds | None = 30.0) -> None:
        """Start (unless started), run until SIGTERM or SIGINT, then `stop(shutdown_timeout)`.

        For a dedicated worker process; must be called from the main thread. A second signal
        while stopping gets its usual handling (SIGINT: KeyboardInterrupt).
        """
        if threading.current_thread() is not threading.main_thread():
            raise DurableError("run_forever must run in the main thread (it handles signals)")
        received: list[int] = []

        def on_signal(signum: int, frame: types.FrameType | None) -> None:
            received.append(signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self._state == "new":
                self.start()
            while not received:
                # Short sleeps: a signal handler must not touch locks this thread may hold.
                time.sleep(0.2)
        finally:
            # A second signal while stopping acts as it would have without us (Ctrl-C twice).
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("worker %s: %s received", self.name, signal.Signals(received[0]).name)
        self.stop(shutdown_timeout)

    # --- heartbeats ------------------------------------------------------------------------

    def _heartbeat(self, lease: float) -> None:
        assert self._client is not None
        sent = time.monotonic()
        self._client.heartbeat(
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
                self.name or self.executor_id,
                sent - self._lease_until,
            )
        self._lease_until = sent + lease

    def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3
        next_beat = time.monotonic() + interval
        while not self._heartbeats_end.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = time.monotonic() + interval
            try:
                self._heartbeat(self.lease_seconds)
            except DurableError as exc:
                log.warning("worker %s: heartbeat failed: %s", self.name or self.executor_id, exc)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.name or self.executor_id)

    # --- claiming --------------------------------------------------------------------------

    def _free_slots(self) -> int:
        """Wait for a free slot; 0 once stopping."""
        with self._lock:
            while len(self._running) >= self.max_concurrent and not self._stopping.is_set():
                self._lock.wait()
            return 0 if self._stopping.is_set() else self.max_concurrent - len(self._running)

    def _poll_loop(self) -> None:
        assert self._client is not None
        # After a failed poll the coordinator may have claimed workflows for this session
        # whose reply never arrived: look for them before polling again.
        maybe_stranded = False
        while free := self._free_slots():
            if maybe_stranded:
                maybe_stranded = not self._adopt_stranded()
                free = self._free_slots()
                if not free:
                    return
            interrupt = threading.Event()
            with self._lock:
                if self._stopping.is_set():
                    return
                self._poll_interrupt = interrupt
            try:
                claimed = self._client.poll_work(
                    self.executor_id,
                    min(free, work.MAX_CLAIM),
                    POLL_WAIT_SECONDS,
                    interrupt=interrupt,
                )
            except Exception as exc:
                # E.g. LEASE_EXPIRED after heartbeats failed: renew, then poll again.
                log.warning("worker %s: poll failed: %s", self.name or self.executor_id, exc)
                maybe_stranded = True
                with contextlib.suppress(DurableError):
                    self._heartbeat(self.lease_seconds)
                self._stopping.wait(work.ERROR_PAUSE_SECONDS)
                continue
            for workflow in claimed:
                self._launch(workflow)

    def _adopt_stranded(self) -> bool:
        """Run the PENDING workflows of this session that nothing in this process runs
        (claimed by a poll whose reply was lost). Returns False if the search failed."""
        assert self._client is not None
        if self._stopping.is_set():
            return True

        def runs_here(workflow_id: str) -> bool:
            with self._lock:
                mine = workflow_id in self._running.values()
            return mine or _running.running_here(workflow_id)

        try:
            found = _drive.run(
                work.stranded(self.executor_id, self._specs, runs_here), self._client
            )
        except DurableError as exc:
            log.warning("worker %s: cannot look for stranded work: %s", self.name, exc)
            return False
        for workflow in found:
            self._launch(workflow)
        return True

    def _launch(self, workflow: pb.Workflow) -> None:
        spec = work.claimed_spec(self._specs, workflow)
        if spec is None:
            return
        thread = threading.Thread(
            target=self._run,
            args=(workflow, spec),
            name=f"workflow-{workflow.workflow_id}",
            daemon=True,
        )
        with self._lock:
            self._running[thread] = workflow.workflow_id
        thread.start()

    # --- running ---------------------------------------------------------------------------

    def _run(self, workflow: pb.Workflow, spec: WorkflowSpec) -> None:
        try:
            self._run_until_settled(workflow, spec)
        finally:
            with self._lock:
                del self._running[threading.current_thread()]
                self._lock.notify_all()

    def _run_until_settled(self, workflow: pb.Workflow, spec: WorkflowSpec) -> None:
        """Run a claimed workflow; while the coordinator is unreachable, try again later
        for as long as the workflow is still this worker's."""
        assert self._client is not None
        workflow_id = workflow.workflow_id
        pause = work.ERROR_PAUSE_SECONDS
        while True:
            try:
                reply = self._client.start_workflow(
                    workflow_id, workflow.name, workflow.input, executor_id=self.executor_id
                )
                execute(self._client, spec, Started(reply, self.executor_id))
                log.info("workflow %s finished", workflow_id)
                return
            except Exception as exc:
                end = work.run_end(exc)
                if end is not work.RunEnd.UNAVAILABLE:
                    log_run_end(workflow_id, end, exc)
                    return
                log.warning("workflow %s: coordinator unavailable (%s)", workflow_id, exc)
                if self._stopping.wait(pause) or not self._still_mine(workflow_id):
                    return
                pause = min(pause * 2, work.MAX_ERROR_PAUSE_SECONDS)

    def _still_mine(self, workflow_id: str) -> bool:
        assert self._client is not None
        try:
            return self._client.get_workflow(workflow_id).executor_id == self.executor_id
        except CoordinatorUnavailableError:
            return True  # cannot tell yet: try again


def log_run_end(workflow_id: str, end: work.RunEnd, error: Exception) -> None:
    """Log how a claimed workflow's run ended (other than the coordinator being away)."""
    if end is work.RunEnd.STOPPED:
        # Another worker runs it now, it was cancelled, or it finished elsewhere.
        log_stopped(workflow_id, error)
    elif end is work.RunEnd.CANNOT_RUN:
        # E.g. NonDeterminismError: it stays PENDING until code that replays it runs.
        log.error("workflow %s cannot run here: %s", workflow_id, error)
    elif end is work.RunEnd.SDK_ERROR:
        log.warning("workflow %s stopped: %s", workflow_id, error)
    else:
        log.info("workflow %s finished with an error (%s)", workflow_id, error)
