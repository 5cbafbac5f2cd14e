"""A worker SIGKILLed mid-workflow: started again with the same ID, the workflow resumes
and the steps completed before the kill do not run again."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator, eventually


def worker(
    coordinator: Coordinator, workflow_id: str, log: Path, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.crash_worker",
            coordinator.address,
            workflow_id,
            str(log),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def step_runs(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_killed_worker_resumes_without_rerunning_completed_steps(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    workflow_id = f"crash-{uuid.uuid4().hex}"
    log = tmp_path / "side-effects.log"

    first = worker(coordinator, workflow_id, log, "--hold-at", "3")
    try:
        eventually(lambda: step_runs(log)["step-3"] == 1, timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    client = durable.Client(coordinator.address)
    try:
        assert client.get_workflow(workflow_id).status == pb.WORKFLOW_STATUS_PENDING
        assert durable.get_event(workflow_id, "progress", timeout=5, client=client) == 40

        second = worker(coordinator, workflow_id, log)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0
        assert out.strip() == str(sum(n * n for n in range(1, 6)))

        runs = step_runs(log)
        # Steps 1 and 2 were recorded before the kill; step 3 was running when it came.
        assert runs == Counter({"step-1": 1, "step-2": 1, "step-3": 2, "step-4": 1, "step-5": 1})
        assert list(durable.watch_event(workflow_id, "progress", timeout=5, client=client)) == [100]
    finally:
        client.close()
