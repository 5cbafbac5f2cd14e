"""Driving tests/worker_process.py workers from a test: spawn, command, signal and read
the side-effect log they share."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import LineProcess


@dataclass(frozen=True)
class SideEffect:
    label: str
    workflow_id: str
    worker: str
    time: float


class SideEffects:
    """The log the workers' steps append to (one fsynced line per side effect)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def release_path(self) -> Path:
        """Created by `release()`: a held step goes on."""
        return self.path.with_name(self.path.name + ".release")

    def release(self) -> None:
        self.release_path.touch()

    def all(self, workflow_id: str | None = None) -> list[SideEffect]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            label, wid, worker, stamp = line.split()
            if workflow_id is None or wid == workflow_id:
                found.append(SideEffect(label, wid, worker, float(stamp)))
        return found

    def counts(self, workflow_id: str) -> Counter[str]:
        return Counter(effect.label for effect in self.all(workflow_id))

    def by(self, worker: str, workflow_id: str) -> list[SideEffect]:
        return [e for e in self.all(workflow_id) if e.worker == worker]


class WorkerProcess(LineProcess):
    """One `python -m tests.worker_process` process."""

    # The program run (`python -m MODULE ADDRESS EFFECTS TAG --name NAME ...`).
    MODULE = "tests.worker_process"

    def __init__(
        self,
        address: str,
        effects: SideEffects,
        tag: str,
        *,
        name: str,
        lease: float = 2.0,
        hold_at: int = 0,
    ) -> None:
        self._spawn(address, effects, tag, name, "--lease", str(lease), "--hold-at", str(hold_at))

    def _spawn(self, address: str, effects: SideEffects, tag: str, name: str, *args: str) -> None:
        super().__init__(
            name,
            [self.MODULE, address, str(effects.path), tag, "--name", name, *args],
            effects.path.with_name(f"{name}-{uuid.uuid4().hex[:6]}.stderr"),
            stdin=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until the worker is registered; returns its executor ID."""
        return self._line("ready ", timeout).split()[1]

    def start(
        self, kind: str, workflow_id: str, timeout: float | None = None, *, wait: bool = True
    ) -> None:
        """Start a workflow in this worker process (and, with `wait`, wait until it is)."""
        assert self.process.stdin is not None
        extra = f" {timeout}" if timeout is not None else ""
        self.process.stdin.write(f"start {kind} {workflow_id}{extra}\n")
        self.process.stdin.flush()
        if wait:
            self._line(f"started {workflow_id}", 20.0)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


class Workers:
    """Spawns worker processes for one test, all on its side-effect log and tag."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.address = address
        self.effects = SideEffects(tmp_path / "side-effects.log")
        self.tag = uuid.uuid4().hex[:12]
        self.processes: list[WorkerProcess] = []

    def spawn(self, name: str, *, lease: float = 2.0, hold_at: int = 0) -> WorkerProcess:
        process = WorkerProcess(
            self.address, self.effects, self.tag, name=name, lease=lease, hold_at=hold_at
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.close()


@contextmanager
def workers_for(address: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(address, tmp_path)
    try:
        yield pool
    finally:
        pool.close()
