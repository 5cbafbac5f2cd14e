"""Starting and enqueuing workflows by name, from a process that does not import them:
`durable.start_workflow("name", ...)`, `Queue.enqueue("name", ...)`,
`durable.aio.start_workflow("name", ...)`, `durable.aio.enqueue(queue, "name", ...)`,
against a real coordinator, with the workflows run by worker processes of both faces
(tests/named_worker_process.py, which this module never imports)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import durable
import durable.aio
from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator, LineProcess, Stub, eventually, new_id

WAIT = 30.0
ORDER = {"id": "o-1", "items": [{"price": 3, "qty": 2}, {"price": 10, "qty": 1}]}
QUEUE = durable.Queue("named-queue")
CLI = [sys.executable, "-m", "durable", "--coordinator"]


class NamedWorker(LineProcess):
    """One `python -m tests.named_worker_process ADDRESS FACE` process."""

    def __init__(self, address: str, face: str, stderr: Path) -> None:
        super().__init__(
            f"{face}-worker",
            ["tests.named_worker_process", address, face],
            stderr,
            stdin=subprocess.DEVNULL,
        )
        self._line("ready ", 30.0)


@pytest.fixture(scope="module")
def workers(
    coordinator: Coordinator, sdk: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    durable.aio.configure(coordinator.address)
    logs = tmp_path_factory.mktemp("named-workers")
    started = [
        NamedWorker(coordinator.address, face, logs / f"{face}.stderr")
        for face in ("sync", "async")
    ]
    yield
    for worker in started:
        worker.close()


def test_this_module_never_imports_the_workflows() -> None:
    assert "tests.named_worker_process" not in sys.modules


def test_a_name_no_worker_registers_waits_enqueued_for_one(
    coordinator: Coordinator, sdk: None, stub: Stub
) -> None:
    with durable.set_workflow_id(new_id("nobody")):
        handle = durable.start_workflow("nobody.registers", {"x": 1}, flag=True)
    assert isinstance(handle, durable.WorkflowHandle)
    workflow = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=handle.workflow_id)).workflow
    # ENQUEUED with no queue and no executor, due at once: any worker registering the
    # name may claim it; this process, which has no such function, does not run it.
    assert workflow.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert (workflow.executor_id, workflow.queue_name, workflow.app_version) == ("", "", "")
    assert workflow.due_time.ToDatetime(tzinfo=timezone.utc) <= datetime.now(timezone.utc)
    info = durable.get_workflow(handle.workflow_id)
    assert info.name == "nobody.registers"
    assert info.input == {"args": [{"x": 1}], "kwargs": {"flag": True}}
    assert handle.status() is durable.WorkflowStatus.ENQUEUED
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.5)
    assert handle.status() is durable.WorkflowStatus.ENQUEUED
    shown = subprocess.run(
        [*CLI, coordinator.address, "workflows", "show", handle.workflow_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert "waiting for a worker that registers 'nobody.registers'" in shown.stderr


def test_sync_start_by_name_is_run_by_a_worker_process(workers: None) -> None:
    handle = durable.start_workflow("orders.process", ORDER, express=True)
    assert handle.result(timeout=WAIT) == {"order": "o-1", "total": 16, "express": True}
    info = durable.get_workflow(handle.workflow_id)
    assert info.status is durable.WorkflowStatus.SUCCESS and info.executor_id
    assert durable.get_event(handle.workflow_id, "status", timeout=5) == "charged"


def test_a_start_by_name_with_an_id_is_idempotent(workers: None) -> None:
    workflow_id = new_id("named")
    with durable.set_workflow_id(workflow_id):
        first = durable.start_workflow("orders.process", ORDER)
        second = durable.start_workflow("orders.process", {"id": "ignored", "items": []})
    assert first.workflow_id == second.workflow_id == workflow_id
    assert second.result(timeout=WAIT) == {"order": "o-1", "total": 16, "express": False}


def test_a_start_by_name_takes_the_workflow_timeout(workers: None) -> None:
    with durable.set_workflow_timeout(600):
        handle = durable.start_workflow("nobody.registers.either")
    deadline = durable.get_workflow(handle.workflow_id).deadline
    assert deadline is not None
    assert deadline - datetime.now(timezone.utc) > timedelta(seconds=500)
    durable.cancel_workflow(handle.workflow_id)


def test_enqueue_by_name_on_a_queue(workers: None) -> None:
    with durable.set_enqueue_options(priority=2):
        handle = QUEUE.enqueue("orders.process", ORDER)
    assert handle.result(timeout=WAIT)["total"] == 16
    info = durable.get_workflow(handle.workflow_id)
    assert (info.queue_name, info.priority) == ("named-queue", 2)


def test_a_workflow_starts_a_child_by_name_for_a_worker(workers: None) -> None:
    handle = durable.start_workflow("orders.parent", ORDER)
    result = handle.result(timeout=WAIT)
    assert result["result"] == {"order": "o-1", "total": 16, "express": True}
    child = durable.get_workflow(result["child"])
    assert child.parent_workflow_id == handle.workflow_id
    assert child.name == "orders.process" and child.status is durable.WorkflowStatus.SUCCESS


def test_async_face_starts_and_enqueues_by_name(workers: None) -> None:
    async def scenario() -> list[Any]:
        started = await durable.aio.start_workflow("orders.aprocess", ORDER, express=True)
        assert isinstance(started, durable.aio.AsyncWorkflowHandle)
        queued = await durable.aio.enqueue(QUEUE, "orders.aprocess", ORDER)
        # A sync worker's workflow, started from the async face, and an async workflow
        # that starts a child by name.
        crossed = await durable.aio.start_workflow("orders.process", ORDER)
        parent = await durable.aio.start_workflow("orders.aparent", ORDER)
        info = await durable.aio.get_workflow(queued.workflow_id)
        assert info.queue_name == "named-queue"
        return [await handle.result(timeout=WAIT) for handle in (started, queued, crossed, parent)]

    started, queued, crossed, parent = asyncio.run(scenario())
    assert started == {"order": "o-1", "total": 16, "express": True, "face": "async"}
    assert queued == {"order": "o-1", "total": 16, "express": False, "face": "async"}
    assert crossed == {"order": "o-1", "total": 16, "express": False}
    assert parent["result"] == crossed


def test_a_by_name_start_is_never_run_by_its_starter(workers: None) -> None:
    """Even in a process whose default client a Worker uses, a start by name goes to the
    coordinator's workers: the handle has no local run."""
    handle = durable.start_workflow("nobody.registers.third")
    assert handle._local is None
    eventually(lambda: durable.get_workflow(handle.workflow_id).status.value == "ENQUEUED")
    durable.cancel_workflow(handle.workflow_id)


def test_a_bad_name_is_refused_before_any_call(sdk: None) -> None:
    with pytest.raises(ValueError, match="1-256 characters"):
        durable.start_workflow("")
    with pytest.raises(ValueError, match="1-256 characters"):
        QUEUE.enqueue("x" * 257)
    with pytest.raises(durable.InvalidRequestError):
        durable.start_workflow("bad\x00name")
