"""Driving tests/queue_worker_process.py workers from a test: spawn, wait until ready, kill,
and read the side-effect log they share (tests/worker_harness.SideEffects)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.worker_harness import SideEffects, WorkerProcess


class QueueWorker(WorkerProcess):
    """One `python -m tests.queue_worker_process` process (it takes no commands on stdin)."""

    MODULE = "tests.queue_worker_process"

    def __init__(self, address: str, effects: SideEffects, tag: str, name: str, *extra: str):
        self._spawn(address, effects, tag, name, *extra)


class QueueWorkers:
    """Spawns queue worker processes for one test, all on its side-effect log and tag."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.address = address
        self.effects = SideEffects(tmp_path / "side-effects.log")
        self.tag = uuid.uuid4().hex[:12]
        self.processes: list[QueueWorker] = []

    @property
    def queue(self) -> str:
        return f"queue.{self.tag}"

    def name_of(self, kind: str) -> str:
        """The workflow name of `kind` (child, parent, queued) in this test's workers."""
        return f"{kind}.{self.tag}"

    def spawn(self, name: str, *extra: str) -> QueueWorker:
        process = QueueWorker(self.address, self.effects, self.tag, name, *extra)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.close()


@contextmanager
def queue_workers_for(address: str, tmp_path: Path) -> Iterator[QueueWorkers]:
    pool = QueueWorkers(address, tmp_path)
    try:
        yield pool
    finally:
        pool.close()
