"""The SDK's shape: one I/O-free core under two faces, and the async face's public names."""

from __future__ import annotations

import ast
import asyncio
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import durable
import durable.aio
from durable._aio.client import default_client

CORE = Path(durable.__file__).parent / "_core"
# What would let the core wait, block or talk to the network itself.
FORBIDDEN = {"threading", "asyncio", "grpc.aio", "time.sleep", "durable._client", "durable._aio"}


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
    return names


def test_the_shared_core_does_no_io_of_its_own() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 6
    for module in modules:
        used = imported_names(module) & FORBIDDEN
        assert not used, f"{module.name} uses {sorted(used)}"


def test_the_async_face_exports_exactly_its_names() -> None:
    assert sorted(durable.aio.__all__) == [
        "AsyncClient",
        "AsyncWorkflowHandle",
        "Worker",
        "cancel_workflow",
        "cancel_workflows",
        "close",
        "configure",
        "current_workflow_id",
        "delete_schedule",
        "delete_workflow",
        "deprecate_patch",
        "enqueue",
        "fork_workflow",
        "get_event",
        "get_queue",
        "get_retention",
        "get_schedule",
        "get_workflow",
        "list_events",
        "list_schedules",
        "list_steps",
        "list_workflows",
        "patched",
        "pause_queue",
        "pause_schedule",
        "recv",
        "resume_queue",
        "resume_schedule",
        "resume_workflow",
        "resume_workflows",
        "retrieve_workflow",
        "run_step",
        "scheduled_time",
        "send",
        "set_attributes",
        "set_event",
        "set_retention",
        "set_schedule",
        "set_start_options",
        "set_step_timeout",
        "set_workflow_id",
        "set_workflow_timeout",
        "sleep",
        "start_workflow",
        "step_idempotency_key",
        "trigger_schedule",
        "watch_event",
        "watch_workflows",
    ]
    assert all(hasattr(durable.aio, name) for name in durable.aio.__all__)


def test_both_faces_share_one_decorator_set() -> None:
    assert not hasattr(durable.aio, "workflow") and not hasattr(durable.aio, "step")

    @durable.workflow(name="tests.layout.plain")
    def plain() -> None: ...

    @durable.workflow(name="tests.layout.coroutine")
    async def coroutine() -> None: ...

    assert not plain.__durable_workflow__.is_async  # type: ignore[attr-defined]
    assert coroutine.__durable_workflow__.is_async  # type: ignore[attr-defined]


def test_configuring_again_closes_the_running_loops_old_default_client() -> None:
    async def main() -> None:
        durable.aio.configure("127.0.0.1:9")
        old = default_client()
        durable.aio.configure("127.0.0.1:9")
        assert default_client() is not old
        await asyncio.sleep(0)  # the old one's close runs in a task of its own
        with pytest.raises(durable.CoordinatorError, match="client closed"):
            await durable.aio.get_workflow("any", client=old)
        await durable.aio.close()

    try:
        asyncio.run(asyncio.wait_for(main(), timeout=10))
    finally:
        durable.aio.configure()


@durable.workflow(name="tests.layout.called")
async def called(x: int) -> int:
    return x


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_call_passed_where_a_function_is_expected_is_refused_clearly() -> None:
    async def main() -> None:
        queue = durable.Queue("tests-layout")
        cases: list[tuple[str, Callable[[], object]]] = [
            ("durable.aio.start_workflow", lambda: durable.aio.start_workflow(called(1))),  # type: ignore[arg-type]
            ("durable.aio.enqueue", lambda: durable.aio.enqueue(queue, called(1))),  # type: ignore[arg-type]
            ("durable.aio.run_step", lambda: durable.aio.run_step(called(1))),  # type: ignore[arg-type]
        ]
        for what, call in cases:
            with pytest.raises(durable.DurableError, match=rf"not {what}\(fn\(\*args\)\)"):
                call()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left never awaited
        asyncio.run(asyncio.wait_for(main(), timeout=10))
