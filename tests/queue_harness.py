"""Driving tests/queue_worker_process.py workers from a test: spawn, wait until ready, kill,
and read the side-effect log they share (tests/worker_harness.SideEffects)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import ROOT, eventually
from tests.worker_harness import SideEffects


class QueueWorker:
    """One `python -m tests.queue_worker_process` process."""

    def __init__(self, address: str, effects: SideEffects, tag: str, name: str, *extra: str):
        self.name = name
        self.stderr_path = effects.path.with_name(f"{name}-{uuid.uuid4().hex[:6]}.stderr")
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.queue_worker_process",
                address,
                str(effects.path),
                tag,
                "--name",
                name,
                *extra,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until the worker is registered; returns its executor ID."""

        def ready() -> str | None:
            if self.process.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.stderr()}")
            return next((line for line in self.lines if line.startswith("ready ")), None)

        return eventually(ready, timeout=timeout).split()[1]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=5)
        self._stderr.close()


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
