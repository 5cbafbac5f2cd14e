"""Sidecar readiness: health follows the database, SIGTERM ends open waits at once and exits
0, the SDK rides out a coordinator restart, and the coordinator serves on a unix socket."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import durable
import durable.aio
from coordinator.errors import ShuttingDown
from coordinator.notify import Hub, event_topic, workflow_topic
from durable import _retry
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    RPC_TIMEOUT,
    WORKFLOW_READ_SQL,
    Activity,
    Coordinator,
    PostgresProxy,
    duration,
    error_info,
    eventually,
    finish,
    free_port,
    new_id,
    payload,
    running_coordinator,
    set_event,
    value_of,
)

SERVICE = "durable.v1.CoordinatorService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE = 5.0
# The SDK retries for 30 s by default; these tests need far less.
RETRY = durable.RetryPolicy(total_seconds=15.0)


@pytest.fixture
def proxy(database_url: str) -> Iterator[PostgresProxy]:
    """The module's database behind a proxy that can make it unreachable."""
    proxy = PostgresProxy(database_url)
    yield proxy
    proxy.close()


def health_of(process: Coordinator) -> dict[str, int]:
    health = health_pb2_grpc.HealthStub(process.channel)
    return {
        name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=RPC_TIMEOUT).status
        for name in ("", SERVICE)
    }


def start(process: Coordinator, workflow_id: str) -> pb.StartWorkflowResponse:
    return process.stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name="tests.sidecar"),
        timeout=RPC_TIMEOUT,
    )


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `call` in a thread; its result (or exception) lands in the returned list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --- health ---------------------------------------------------------------------------------


def test_health_follows_the_database_and_recovers_by_itself(proxy: PostgresProxy) -> None:
    with running_coordinator(proxy.url) as process:
        assert health_of(process) == {"": SERVING, SERVICE: SERVING}

        proxy.cut()
        eventually(
            lambda: health_of(process) == {"": NOT_SERVING, SERVICE: NOT_SERVING}, timeout=PROMPT
        )
        proxy.resume()
        eventually(lambda: health_of(process) == {"": SERVING, SERVICE: SERVING}, timeout=15)

        # The pool let go of the connections the outage broke: the first write just works.
        workflow_id = new_id()
        assert start(process, workflow_id).created
        assert set_event(process.stub, workflow_id, 1, "after", "outage").version == 1
        assert process.process.poll() is None
        log = process.log()
        assert log.count("health: NOT_SERVING (") == 1, log  # logged once, not every probe
        assert log.count("health: SERVING") == 2, log


def test_health_goes_not_serving_when_the_database_hangs(proxy: PostgresProxy) -> None:
    """No byte passes, yet every connection stays open (LISTEN seems fine): the bounded
    probe notices, and the hung probe does not hang the health service."""
    with running_coordinator(proxy.url) as process:
        proxy.stall()
        eventually(
            lambda: health_of(process) == {"": NOT_SERVING, SERVICE: NOT_SERVING}, timeout=PROMPT
        )
        assert "health: NOT_SERVING (the database did not answer within" in process.log()
        proxy.resume()
        eventually(lambda: health_of(process) == {"": SERVING, SERVICE: SERVING}, timeout=15)
        assert start(process, new_id()).created


# --- shutdown -------------------------------------------------------------------------------


def test_sigterm_ends_open_waits_with_unavailable_and_exits_zero(
    database_url: str, activity: Activity
) -> None:
    process = Coordinator(database_url, "--shutdown-grace", str(GRACE))
    try:
        process.wait_serving()
        workflow_id = new_id()
        start(process, workflow_id)
        set_event(process.stub, workflow_id, 1, "progress", 1)

        since = activity.now()
        awaiting = process.stub.AwaitWorkflow.future(
            pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(60)),
            timeout=60 + RPC_TIMEOUT,
        )
        activity.wait_parked(since, WORKFLOW_READ_SQL)  # the wait is in the coordinator
        stream = process.stub.GetEvent(
            pb.GetEventRequest(
                workflow_id=workflow_id, key="progress", follow=True, timeout=duration(60)
            ),
            timeout=60 + RPC_TIMEOUT,
        )
        assert value_of(next(stream).event.value) == 1  # following

        signalled = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as ended:
            next(stream)
        failed = awaiting.exception(timeout=PROMPT)
        assert time.monotonic() - signalled < GRACE / 2  # promptly, not when the grace ends
        for error in (ended.value, failed):
            assert isinstance(error, grpc.RpcError)
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert error.details() == "coordinator shutting down; retry"
            assert error_info(error).reason == "SHUTTING_DOWN"

        assert process.process.wait(timeout=GRACE) == 0
        assert time.monotonic() - signalled < GRACE
        assert "coordinator stopped" in process.log()
    finally:
        process.stop()


def test_a_closed_hub_ends_every_wait_now_and_later() -> None:
    async def scenario() -> tuple[bool, bool]:
        hub = Hub()
        with hub.subscribe(event_topic("ns", "w", "k")) as waiter:
            waiter.arm()
            waiting = asyncio.create_task(waiter.wait(3600))
            await asyncio.sleep(0)
            hub.close()
            with pytest.raises(ShuttingDown):
                await asyncio.wait_for(waiting, 5)
        with hub.subscribe(workflow_topic("ns", "w")) as late:
            late.arm()
            with pytest.raises(ShuttingDown):
                await late.wait(3600)
        return hub.closed, hub.waiter_count == 0

    assert asyncio.run(scenario()) == (True, True)


# --- the SDK across outages -----------------------------------------------------------------


def test_watch_event_resumes_across_a_coordinator_restart(
    database_url: str, coordinator: Coordinator
) -> None:
    """A watcher following a workflow through a coordinator that restarts on the same port
    gets every value once, in order, also those set (through another coordinator) while
    its own was down."""
    first = Coordinator(database_url)
    second: Coordinator | None = None
    client = durable.Client(first.address, retry=RETRY)
    try:
        first.wait_serving()
        workflow_id = new_id()
        start(first, workflow_id)
        set_event(first.stub, workflow_id, 1, "progress", 1)
        seen: list[Any] = []
        watcher, outcome = in_thread(
            lambda: seen.extend(durable.watch_event(workflow_id, "progress", 30, client=client))
        )
        eventually(lambda: seen == [1], timeout=PROMPT)

        first.stop()  # SIGTERM: the watcher's stream ends with UNAVAILABLE; it retries
        set_event(coordinator.stub, workflow_id, 2, "progress", 2)
        set_event(coordinator.stub, workflow_id, 3, "progress", 3)
        second = Coordinator(database_url, port=first.port)
        second.wait_serving()
        eventually(lambda: seen == [1, 2, 3], timeout=15)
        set_event(second.stub, workflow_id, 4, "progress", 4)  # live again
        finish(second.stub, workflow_id)
        watcher.join(timeout=PROMPT)
        assert not watcher.is_alive()
        assert outcome == [None]  # ended normally: the workflow finished
        assert seen == [1, 2, 3, 4]
    finally:
        client.close()
        first.stop()
        if second is not None:
            second.stop()


def test_sdk_call_made_while_the_coordinator_is_down_succeeds_when_it_is_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retried = threading.Event()
    next_delay = _retry.Backoff.next_delay

    def noting_pause(self: _retry.Backoff) -> float | None:
        retried.set()
        return next_delay(self)

    monkeypatch.setattr(_retry.Backoff, "next_delay", noting_pause)
    port = free_port()
    client = durable.Client(f"127.0.0.1:{port}", retry=RETRY)
    workflow_id = new_id()
    process: Coordinator | None = None
    try:
        # A write, then a wait for an event, both begun while nothing listens on the port.
        calls, outcome = in_thread(
            lambda: (
                client.start_workflow(workflow_id, "tests.sidecar", payload(None)).workflow.status,
                durable.get_event(workflow_id, "ready", 20, client=client),
            )
        )
        assert retried.wait(timeout=PROMPT)  # a call failed with UNAVAILABLE and is retrying
        process = Coordinator(database_url, port=port)
        process.wait_serving()
        start(process, workflow_id)  # StartWorkflow is idempotent: whichever start comes first
        set_event(process.stub, workflow_id, 1, "ready", "yes")
        calls.join(timeout=15)
        assert outcome == [(pb.WORKFLOW_STATUS_PENDING, "yes")]
    finally:
        client.close()
        if process is not None:
            process.stop()


@durable.workflow(name="tests.sidecar.greet")
def greet(name: str) -> str:
    return f"hello {name}"


def test_sdk_chooses_the_id_of_a_workflow_it_starts(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that retrying StartWorkflow after a lost reply cannot start a second workflow."""
    client = durable.Client(coordinator.address, retry=RETRY)
    sent: list[str] = []
    start_workflow = client.start_workflow

    def spy(
        workflow_id: str, name: str, input: pb.Payload, **options: Any
    ) -> pb.StartWorkflowResponse:
        sent.append(workflow_id)
        return start_workflow(workflow_id, name, input, **options)

    monkeypatch.setattr(client, "start_workflow", spy)
    monkeypatch.setattr(durable._workflow, "default_client", lambda: client)
    try:
        handle = durable.start_workflow(greet, "you")
        assert handle.result(timeout=10) == "hello you"
        assert sent == [handle.workflow_id]
        assert uuid.UUID(sent[0]).version == 4
    finally:
        client.close()


# --- unix sockets ---------------------------------------------------------------------------


def test_coordinator_serves_on_a_unix_socket(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sock"
    process = Coordinator(database_url, address=f"unix:{path}")
    client = durable.Client(f"unix:{path}", retry=RETRY)
    try:
        process.wait_serving()  # health, over the socket
        assert path.is_socket()
        assert f"coordinator ready on unix:{path}" in process.log()
        workflow_id = new_id()
        start(process, workflow_id)
        set_event(process.stub, workflow_id, 1, "where", "unix")
        assert durable.get_event(workflow_id, "where", 5, client=client) == "unix"
        assert durable.retrieve_workflow(workflow_id, client=client).status() is (
            durable.WorkflowStatus.PENDING
        )
    finally:
        client.close()
        process.stop()


def test_the_async_client_reaches_a_coordinator_on_a_unix_socket(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "coordinator.sock"
    process = Coordinator(database_url, address=f"unix:{path}")

    async def main(workflow_id: str) -> None:
        async with durable.aio.AsyncClient(f"unix:{path}", retry=RETRY) as client:
            assert await durable.aio.get_event(workflow_id, "where", 5, client=client) == "unix"
            handle = await durable.aio.retrieve_workflow(workflow_id, client=client)
            assert await handle.status() is durable.WorkflowStatus.PENDING

    try:
        process.wait_serving()
        workflow_id = new_id()
        start(process, workflow_id)
        set_event(process.stub, workflow_id, 1, "where", "unix")
        asyncio.run(asyncio.wait_for(main(workflow_id), timeout=60))
    finally:
        process.stop()
