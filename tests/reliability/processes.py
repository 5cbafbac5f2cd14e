"""Driving tests/reliability/flow.py processes from a test: spawn them, read what they
print, kill them."""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import LineProcess

# The SDK faces a flow process can run in: plain threads (`durable`) or one event loop
# (`durable.aio`). The crash scenarios run once with each.
FACES = ("sync", "async")


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


class FlowProcess(LineProcess):
    """One `python -m tests.reliability.flow` process, in the SDK's `face` ("sync" or
    "async")."""

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
        face: str = "sync",
    ) -> None:
        self.outcomes = Outcomes()
        unique = f"reliability-{name}-{uuid.uuid4().hex[:8]}.log"
        super().__init__(
            name,
            [
                "tests.reliability.flow",
                *(mode, target, database_url, prefix, str(first), str(count)),
                *("--name", name, "--face", face, *options),
            ],
            Path(tempfile.gettempdir()) / unique,
            stdin=subprocess.DEVNULL,
        )

    def on_line(self, line: str) -> None:
        if line.startswith("{"):
            self.outcomes.add(json.loads(line))

    def log(self) -> str:
        return self.stderr()[-5000:]

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            last = self.lines[-3:]
            raise AssertionError(f"{self.name} ended early; last lines {last}:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> str:
        """A worker's executor ID, once it has started its workflows."""
        return self._line("ready ", timeout, interval=0.05).split()[1]

    def wait_done(self, timeout: float) -> Outcomes:
        """A driver's outcomes, once every workflow it ran has ended."""
        self._line("done", timeout, interval=0.05)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.outcomes


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
