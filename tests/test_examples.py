"""The programs in examples/ run as real processes against a real coordinator and print
what examples/README.md says they print."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator

RUN_TIMEOUT = 60.0


def run_example(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m examples.<module> ARGS` to completion; fail unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", f"examples.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def progress_values(output: list[str]) -> list[int]:
    prefix = "progress: "
    return [int(line[len(prefix) :].rstrip("%")) for line in output if line.startswith(prefix)]


@pytest.mark.parametrize("module", ["data_processing", "checkout"])
def test_help(module: str) -> None:
    result = run_example(module, "--help")
    assert "--coordinator" in result.stdout
    assert "--step-seconds" in result.stdout


def test_data_processing_prints_progress_live_then_status_and_result(
    coordinator: Coordinator,
) -> None:
    workflow_id = f"data-{uuid.uuid4().hex}"
    args = ["--coordinator", coordinator.address, "--workflow-id", workflow_id]
    # Steps of a second leave the watcher ample time to connect before progress 50 is set.
    output = lines(run_example("data_processing", *args, "--step-seconds", "1"))

    assert output[0] == f"workflow: {workflow_id}"
    progress = progress_values(output)
    # A watcher sees the value current when it starts, then every later one, in order.
    # Nothing sets 0 here, and the watcher starts while step one still runs.
    assert progress == [50, 100], output
    assert output[-2:] == ["status: complete", "result: done"]

    # Started again under the same ID, the finished workflow is not run again: its
    # recorded result comes back and the watcher sees only the final progress.
    again = lines(run_example("data_processing", *args, "--step-seconds", "0.2"))
    assert again == [f"workflow: {workflow_id}", "progress: 100%", *output[-2:]]


def test_checkout_prints_payment_url_then_success(coordinator: Coordinator) -> None:
    order_id = f"order-{uuid.uuid4().hex}"
    result = run_example(
        "checkout",
        "--coordinator",
        coordinator.address,
        "--order-id",
        order_id,
        "--step-seconds",
        "0.2",
    )
    assert lines(result) == [
        f"workflow: checkout-{order_id}",
        f"payment URL: https://pay.example/{order_id}",
        "result: success",
    ]


def test_checkout_shows_payment_url_while_workflow_still_runs(coordinator: Coordinator) -> None:
    """The URL is read from the event, not from the result: it is printed while the
    workflow is still PENDING, waiting for the payment."""
    order_id = f"order-{uuid.uuid4().hex}"
    workflow_id = f"checkout-{order_id}"
    env = {**os.environ, "DURABLE_COORDINATOR": coordinator.address}  # the default address
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.checkout", "--order-id", order_id, "--step-seconds", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == f"workflow: {workflow_id}\n"
        assert process.stdout.readline() == f"payment URL: https://pay.example/{order_id}\n"
        reply = coordinator.stub.GetWorkflow(
            pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=10
        )
        assert reply.workflow.status == pb.WORKFLOW_STATUS_PENDING
        rest, _ = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest == "result: success\n"
    assert process.returncode == 0


def test_example_reports_unreachable_coordinator() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.checkout", "--coordinator", "127.0.0.1:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 2
    assert "cannot reach the coordinator at 127.0.0.1:1" in result.stderr
