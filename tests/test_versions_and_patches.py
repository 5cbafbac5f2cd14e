"""Code changes while workflows are in flight, over a real coordinator: application versions
(a worker is handed only its version's workflows), patch markers (old runs replay the old
branch, new runs take the new one), step idempotency keys and attempt numbers that survive
recovery, and @durable.scheduled workflows that read their tick.

An "old run" is made with the wire API as an old worker would have left it: a session whose
lease is left to lapse, the workflow started under it, and the steps it recorded. The new
code then recovers it through a real durable.Worker (sync) or durable.aio.Worker (async).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

import durable
import durable.aio
from durable._aio.client import default_client
from durable._core.specs import spec_of
from durable._core.versions import derived
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, Stub, eventually, payload

LEASE = 1.0


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    """The SDK's default client: workflows started here run under a worker on it."""
    client = durable.configure(coordinator.address)
    yield client
    client.close()


def dead_session(stub: Stub, names: list[str], app_version: str = "") -> str:
    """A worker session that registers and is never heard from again (its lease lapses)."""
    executor = f"old-{uuid.uuid4().hex}"
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor,
            workflow_names=names,
            lease=Duration(seconds=1),
            app_version=app_version,
        )
    )
    return executor


def old_run(
    stub: Stub, name: str, steps: list[tuple[str, Any]], app_version: str = "", **kwargs: Any
) -> str:
    """A workflow that a worker of older code started and ran `steps` of before dying."""
    workflow_id = f"{name}-{uuid.uuid4().hex[:8]}"
    executor = dead_session(stub, [name], app_version)
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name=name,
            input=payload({"args": [], "kwargs": kwargs}),
            executor_id=executor,
            app_version=app_version,
        )
    )
    for step_id, (step_name, output) in enumerate(steps, start=1):
        stub.RunStep(
            pb.RunStepRequest(
                workflow_id=workflow_id,
                step_id=step_id,
                name=step_name,
                output=payload(output),
                executor_id=executor,
            )
        )
    return workflow_id


def kinds(client: durable.Client, workflow_id: str) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in durable.list_steps(workflow_id, client=client)]


# --- patch markers --------------------------------------------------------------------------

ran: list[str] = []


@durable.step
def old_check(order: str) -> str:
    ran.append(f"old:{order}")
    return "old"


@durable.step
def new_check(order: str) -> str:
    ran.append(f"new:{order}")
    return "new"


@durable.workflow(name="patches.order")
def patched_order(order: str) -> str:
    if durable.patched("new-check"):
        return f"{new_check(order)}-done"
    return f"{old_check(order)}-done"


@durable.workflow(name="patches.cleaned")
def cleaned_order(order: str) -> str:
    durable.deprecate_patch("new-check")
    return f"{new_check(order)}-done"


def test_an_old_run_recovered_on_patched_code_replays_the_old_branch(
    stub: Stub, client: durable.Client
) -> None:
    old = old_run(stub, "patches.order", [("old_check", "old")], order="o1")
    ran.clear()
    with durable.Worker([patched_order], lease_seconds=LEASE, client=client) as worker:
        assert worker
        result = durable.retrieve_workflow(old, client=client).result(timeout=30)
        assert result == "old-done"
        assert ran == []  # the recorded step was replayed, not run again
        assert kinds(client, old) == [("step", "old_check")]

        fresh = durable.start_workflow(patched_order, "o2")
        assert fresh.result(timeout=30) == "new-done"
    assert ran == ["new:o2"]
    assert kinds(client, fresh.workflow_id) == [("patch", "new-check"), ("step", "new_check")]


def test_a_patched_run_replays_the_new_branch_after_recovery(
    stub: Stub, client: durable.Client
) -> None:
    # Crashed after the marker and before its step: the replay keeps the new branch.
    old = old_run(stub, "patches.order", [], order="o3")
    executor = durable.get_workflow(old, client=client).executor_id or ""
    stub.RunStep(
        pb.RunStepRequest(
            workflow_id=old,
            step_id=1,
            name="new-check",
            kind=pb.STEP_KIND_PATCH,
            output=payload(True),
            executor_id=executor,
        )
    )
    ran.clear()
    with durable.Worker([patched_order], lease_seconds=LEASE, client=client):
        assert durable.retrieve_workflow(old, client=client).result(timeout=30) == "new-done"
    assert ran == ["new:o3"]


def test_deprecate_patch_passes_over_a_recorded_marker_and_records_none(
    stub: Stub, client: durable.Client
) -> None:
    with_marker = old_run(stub, "patches.cleaned", [], order="o4")
    executor = durable.get_workflow(with_marker, client=client).executor_id or ""
    for step_id, name, kind, output in (
        (1, "new-check", pb.STEP_KIND_PATCH, True),
        (2, "new_check", pb.STEP_KIND_STEP, "new"),
    ):
        stub.RunStep(
            pb.RunStepRequest(
                workflow_id=with_marker,
                step_id=step_id,
                name=name,
                kind=kind,
                output=payload(output),
                executor_id=executor,
            )
        )
    ran.clear()
    with durable.Worker([cleaned_order], lease_seconds=LEASE, client=client):
        assert durable.retrieve_workflow(with_marker, client=client).result(timeout=30) == (
            "new-done"
        )
        assert ran == []
        fresh = durable.start_workflow(cleaned_order, "o5")
        assert fresh.result(timeout=30) == "new-done"
    assert kinds(client, fresh.workflow_id) == [("step", "new_check")]


@durable.workflow(name="patches.async")
async def async_patched(order: str) -> str:
    if await durable.aio.patched("new-check"):
        return f"{await async_check(order)}-new"
    return f"{await async_check(order)}-old"


@durable.step
async def async_check(order: str) -> str:
    return order


def test_async_patched_takes_the_old_branch_for_an_old_run_and_the_new_one_for_a_new_run(
    stub: Stub, coordinator: Coordinator
) -> None:
    old = old_run(stub, "patches.async", [("async_check", "x")], order="x")

    async def main() -> tuple[Any, Any]:
        durable.aio.configure(coordinator.address)
        aclient = default_client()
        worker = durable.aio.Worker([async_patched], lease_seconds=LEASE, client=aclient)
        await worker.start()
        try:
            first = await durable.aio.retrieve_workflow(old, client=aclient)
            second = await durable.aio.start_workflow(async_patched, "y")
            return await first.result(timeout=30), await second.result(timeout=30)
        finally:
            await worker.stop()
            await durable.aio.close()

    assert asyncio.run(main()) == ("x-old", "y-new")


def test_a_patch_marker_must_be_a_patch_step_kind_the_coordinator_knows(stub: Stub) -> None:
    workflow_id = old_run(stub, "patches.order", [])
    with pytest.raises(Exception) as raised:
        stub.RunStep(
            pb.RunStepRequest(
                workflow_id=workflow_id,
                step_id=1,
                name="x",
                kind=pb.STEP_KIND_SLEEP,
                output=payload(True),
            )
        )
    assert "kind" in str(raised.value)


# --- application versions -----------------------------------------------------------------

version_runs: list[str] = []


@durable.workflow(name="versions.flow")
def versioned(tag: str) -> str:
    version_runs.append(durable.current_workflow_id() or "")
    return tag


def test_a_worker_is_handed_only_workflows_of_its_version(
    stub: Stub, client: durable.Client
) -> None:
    v1_run = old_run(stub, "versions.flow", [], app_version="v1", tag="one")
    version_runs.clear()
    with durable.Worker([versioned], lease_seconds=LEASE, client=client, app_version="v2") as v2:
        # v2 polls all along; only the v1 worker below may take the v1 workflow.
        unversioned = durable.start_workflow(versioned, "free")
        assert unversioned.result(timeout=30) == "free"
        assert durable.get_workflow(unversioned.workflow_id, client=client).app_version == "v2"
        with durable.Worker([versioned], lease_seconds=LEASE, client=client, app_version="v1"):
            assert durable.retrieve_workflow(v1_run, client=client).result(timeout=30) == "one"
        info = durable.get_workflow(v1_run, client=client)
        assert info.app_version == "v1"
        assert info.executor_id != v2.executor_id
        listed = [w.workflow_id for w in durable.list_workflows(app_version="v1", client=client)]
        assert v1_run in listed and unversioned.workflow_id not in listed


def test_fork_moves_a_workflow_to_another_version(stub: Stub, client: durable.Client) -> None:
    v1_run = old_run(stub, "versions.flow", [], app_version="v1", tag="moved")
    with durable.Worker([versioned], lease_seconds=LEASE, client=client, app_version="v3"):
        fork = durable.fork_workflow(v1_run, 1, app_version="v3", client=client)
        assert fork.result(timeout=30) == "moved"
    assert durable.get_workflow(fork.workflow_id, client=client).app_version == "v3"
    assert durable.get_workflow(v1_run, client=client).app_version == "v1"


def test_the_default_version_is_derived_from_the_workflows_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DURABLE_APP_VERSION", raising=False)
    first = durable.Worker([versioned, patched_order]).app_version
    assert first == durable.Worker([patched_order, versioned]).app_version
    assert first != durable.Worker([versioned]).app_version
    assert first == derived([spec_of(versioned), spec_of(patched_order)])
    monkeypatch.setenv("DURABLE_APP_VERSION", "release-42")
    assert durable.Worker([versioned]).app_version == "release-42"
    assert durable.Worker([versioned], app_version="given").app_version == "given"


# --- step idempotency keys and attempts across recovery -------------------------------------

seen: list[str] = []


@durable.step(retry=durable.StepRetry(max_attempts=6, initial_backoff_seconds=0.01))
def charge(amount: int) -> str:
    key = durable.step_idempotency_key()
    seen.append(key)
    if len(seen) <= 2:  # the first two attempts in this process fail
        raise RuntimeError("payment service down")
    return f"charged {amount} with {key}"


@durable.workflow(name="keys.pay")
def pay(amount: int) -> str:
    return charge(amount)


def test_the_idempotency_key_and_attempt_numbers_carry_over_recovery(
    stub: Stub, client: durable.Client
) -> None:
    old = old_run(stub, "keys.pay", [], amount=5)
    executor = durable.get_workflow(old, client=client).executor_id or ""
    for attempt in (1, 2):  # the old run failed twice, then died
        stub.RecordStepAttempt(
            pb.RecordStepAttemptRequest(
                workflow_id=old,
                step_id=1,
                name="charge",
                attempt=attempt,
                error=pb.Failure(type="builtins.RuntimeError", message="down"),
                executor_id=executor,
            )
        )
    seen.clear()
    with durable.Worker([pay], lease_seconds=LEASE, client=client):
        result = durable.retrieve_workflow(old, client=client).result(timeout=30)
    assert result == f"charged 5 with {old}:1"
    assert seen == [f"{old}:1"] * 3  # the same key on every attempt here
    (step,) = durable.list_steps(old, client=client)
    # 1 and 2 failed in the old run, 3 and 4 here, and 5 succeeded.
    assert [a.attempt for a in step.failed_attempts] == [1, 2, 3, 4]
    assert step.attempts == 5


def test_step_idempotency_key_outside_a_step_is_an_error() -> None:
    with pytest.raises(durable.NotInWorkflowError):
        durable.step_idempotency_key()


# --- scheduled workflows --------------------------------------------------------------------


@durable.scheduled("* * * * * *", name="versions-test-every-second", catch_up="skip")
@durable.workflow(name="schedules.tick")
def every_second() -> str | None:
    tick = durable.scheduled_time()
    return tick.isoformat() if tick else None


def test_a_scheduled_workflow_registers_its_schedule_and_reads_its_tick(
    client: durable.Client,
) -> None:
    try:
        with durable.Worker([every_second], lease_seconds=LEASE, client=client):
            schedule = durable.get_schedule("versions-test-every-second", client=client)
            assert schedule.workflow_name == "schedules.tick"
            assert schedule.next_ticks and all(t.microsecond == 0 for t in schedule.next_ticks)

            def finished() -> durable.WorkflowInfo | None:
                for info in durable.list_workflows(name="schedules.tick", client=client):
                    if info.status is durable.WorkflowStatus.SUCCESS:
                        return info
                return None

            info = eventually(finished, timeout=30)
            tick = datetime.fromisoformat(info.output)
            assert info.workflow_id == f"versions-test-every-second@{tick:%Y-%m-%dT%H:%M:%SZ}"
            assert tick.tzinfo is not None and tick.astimezone(timezone.utc) == tick

            triggered = durable.trigger_schedule("versions-test-every-second", client=client)
            assert triggered.result(timeout=30) is not None
    finally:
        durable.delete_schedule("versions-test-every-second", client=client)


def test_scheduled_goes_above_workflow() -> None:
    with pytest.raises(durable.DurableError, match=r"above @durable\.workflow"):

        @durable.scheduled("* * * * *")
        def plain() -> None: ...
