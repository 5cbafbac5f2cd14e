"""Driving tests/reliability/flow.py processes from a test: spawn them, read what they
print, kill them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import ROOT, eventually


@dataclass
class Outcomes:
    """What drive processes printed: workflow results, errors and watched values."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    watches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, line: dict[str, Any]) -> None:
        if "watch" in line:
            self.watches[line["watch"]] = line
        elif "error" in line:
            self.errors[line["id"]] = line["error"]
        else:
            self.results[line["id"]] = line["result"]


class FlowProcess:
    """One `python -m tests.reliability.flow` process."""

    def __init__(
        self,
        mode: str,
        target: str,
        database_url: str,
        prefix: str,
        first: int,
        count: int,
        *options: str,
        name: str,
    ) -> None:
        self.name = name
        # stderr to a file: a full pipe would block the process, and the log helps a failure.
        unique = f"reliability-{name}-{uuid.uuid4().hex[:8]}.log"
        self.log_path = Path(tempfile.gettempdir()) / unique
        self._stderr = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reliability.flow",
                mode,
                target,
                database_url,
                prefix,
                str(first),
                str(count),
                "--name",
                name,
                *options,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self.outcomes = Outcomes()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.strip()
            self.lines.append(line)
            if line.startswith("{"):
                self.outcomes.add(json.loads(line))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def _line(self, prefix: str, timeout: float) -> str:
        def found() -> str | None:
            exited = self.process.poll() is not None and not self._reader.is_alive()
            line = next((line for line in self.lines if line.startswith(prefix)), None)
            if line is None and exited:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            return line

        return eventually(found, timeout=timeout, interval=0.05)

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            last = self.lines[-3:]
            raise AssertionError(f"{self.name} ended early; last lines {last}:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> str:
        """A worker's executor ID, once it has started its workflows."""
        return self._line("ready ", timeout).split()[1]

    def wait_done(self, timeout: float) -> Outcomes:
        """A driver's outcomes, once every workflow it ran has ended."""
        self._line("done", timeout)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.outcomes

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


def all_running(processes: list[FlowProcess]) -> Callable[[], None]:
    """A guard for waits that need `processes` alive."""

    def check() -> None:
        for process in processes:
            process.assert_running()

    return check


def merge(outcomes: list[Outcomes]) -> Outcomes:
    merged = Outcomes()
    for part in outcomes:
        merged.results.update(part.results)
        merged.errors.update(part.errors)
        merged.watches.update(part.watches)
    return merged
