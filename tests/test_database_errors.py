"""Database trouble as callers see it (coordinator/store/db.py, coordinator/edge.py): a
read-only server (25006), a terminated connection (57P01) or a lost one (08xxx) is
UNAVAILABLE with a reason and its connection is discarded; a request's deadline cancels
its statement in the database; a URL with no usable host leaves the coordinator up,
NOT_SERVING and saying why, until one comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator import background, metrics
from coordinator.edge import domain_error
from coordinator.errors import DatabaseUnavailable
from coordinator.store import db
from durable.v1 import coordinator_pb2 as pb
from tests.reliability.postgres import DedicatedPostgres
from tests.reliability.replication import ReplicatedPostgres
from tests.support import (
    RPC_TIMEOUT,
    Activity,
    Coordinator,
    Stub,
    eventually,
    finish,
    free_port,
    payload,
    rpc_error,
    start_pending,
)


@asynccontextmanager
async def open_pool(database_url: str) -> AsyncIterator[db.Pool]:
    await db.migrate(database_url)
    pool = await db.open_pool(database_url, 1, 2)
    try:
        yield pool
    finally:
        await pool.close()


async def failing_use(
    pool: db.Pool, prepare: Callable[[psycopg.AsyncConnection[object]], Awaitable[None]]
) -> tuple[Exception, psycopg.AsyncConnection[object]]:
    """Run `prepare` then a write on one pooled connection; the error and the connection."""
    held: list[psycopg.AsyncConnection[object]] = []
    with pytest.raises(psycopg.Error) as caught:
        async with pool.connection() as conn:
            held.append(conn)
            await prepare(conn)
            await conn.execute("CREATE TABLE durable_write_probe (x int)")
    return caught.value, held[0]


def assert_unavailable(exc: Exception) -> None:
    error = domain_error(exc, "Test", None)
    assert isinstance(error, DatabaseUnavailable)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "DATABASE_UNAVAILABLE"


def test_a_read_only_server_mid_request_is_unavailable_and_its_connection_discarded(
    database_url: str,
) -> None:
    async def scenario() -> None:
        async with open_pool(database_url) as pool:

            async def read_only(conn: psycopg.AsyncConnection[object]) -> None:
                # What a demoted primary's session answers to a write.
                await conn.execute("SET default_transaction_read_only = on")

            exc, conn = await failing_use(pool, read_only)
            assert isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)  # SQLSTATE 25006
            assert_unavailable(exc)
            assert conn.closed, "a connection to a read-only server went back to the pool"
            async with pool.connection() as fresh:
                assert fresh is not conn
                await fresh.execute("SELECT 1")

    asyncio.run(scenario())


def test_a_terminated_connection_is_unavailable_and_discarded(database_url: str) -> None:
    async def scenario() -> None:
        async with open_pool(database_url) as pool:

            async def terminated(conn: psycopg.AsyncConnection[object]) -> None:
                async with await psycopg.AsyncConnection.connect(
                    database_url, autocommit=True
                ) as other:
                    await other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

            exc, conn = await failing_use(pool, terminated)
            assert isinstance(exc, psycopg.OperationalError)  # 57P01, or the lost socket
            assert_unavailable(exc)
            assert conn.closed

    asyncio.run(scenario())


def test_a_request_deadline_cancels_its_statement_in_the_database(database_url: str) -> None:
    """A statement stuck on a row lock is cancelled when the request's deadline passes, its
    connection discarded and the lock wait gone: nothing held past the caller's deadline."""

    async def scenario() -> float:
        async with (
            open_pool(database_url) as pool,
            await psycopg.AsyncConnection.connect(database_url) as locker,
        ):
            await locker.execute("CREATE TABLE IF NOT EXISTS deadline_probe (id int PRIMARY KEY)")
            await locker.execute("INSERT INTO deadline_probe VALUES (1) ON CONFLICT DO NOTHING")
            await locker.commit()
            await locker.execute("SELECT * FROM deadline_probe WHERE id = 1 FOR UPDATE")
            loop = asyncio.get_running_loop()
            db.DEADLINE.set(loop.time() + 0.5)
            started = loop.time()
            with pytest.raises(psycopg.errors.QueryCanceled) as caught:
                async with pool.connection() as conn:
                    await conn.execute("UPDATE deadline_probe SET id = 1 WHERE id = 1")
            took = loop.time() - started
            assert_unavailable(caught.value)
            assert conn.closed
            await locker.rollback()
            return took

    took = asyncio.run(scenario())
    assert 0.4 < took < 3.0, took


def test_a_stuck_finish_ends_with_its_deadline_and_holds_no_lock_after_it(
    stub: Stub, database_url: str, activity: Activity
) -> None:
    workflow_id = start_pending(stub)
    with psycopg.connect(database_url) as locker:
        locker.execute(
            "SELECT 1 FROM durable.workflows WHERE workflow_id = %s FOR UPDATE", (workflow_id,)
        )
        started = time.monotonic()
        error = rpc_error(
            lambda: stub.FinishWorkflow(
                pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload("done")),
                timeout=1.0,
            )
        )
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3.0
        # The coordinator's statement was cancelled: nobody waits on the lock any more.
        eventually(lambda: activity.lock_waiters() == 0, timeout=5)
        locker.rollback()
    # And the workflow finishes normally afterwards.
    finish(stub, workflow_id)


def health(coordinator: Coordinator) -> int:
    stub = health_pb2_grpc.HealthStub(coordinator.channel)
    try:
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status)
    except grpc.RpcError:
        return int(health_pb2.HealthCheckResponse.UNKNOWN)


def test_all_hosts_down_not_serving_unavailable_with_a_reason_then_recovers() -> None:
    postgres = DedicatedPostgres()
    try:
        postgres.stop()
        url = f"postgresql://postgres@127.0.0.1:{free_port()},127.0.0.1:{postgres.port}/postgres"
        coordinator = Coordinator(url)
        try:
            eventually(
                lambda: health(coordinator) == health_pb2.HealthCheckResponse.NOT_SERVING,
                timeout=15,
            )
            error = rpc_error(
                lambda: coordinator.stub.StartWorkflow(
                    pb.StartWorkflowRequest(workflow_id="down-1", name="t"), timeout=RPC_TIMEOUT
                )
            )
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "waiting for a read-write database" in (error.details() or "")
            postgres.start()
            coordinator.wait_serving(timeout=30)
            start_pending(coordinator.stub)
            assert coordinator.process.poll() is None
        finally:
            coordinator.stop()
        assert "Traceback" not in coordinator.log()
    finally:
        postgres.close()


def test_a_url_naming_only_a_standby_says_so_and_exits_after_the_wait() -> None:
    pair = ReplicatedPostgres(synchronous=False)
    try:
        coordinator = Coordinator(pair.standby.url, "--database-wait", "8")
        try:
            eventually(
                lambda: health(coordinator) == health_pb2.HealthCheckResponse.NOT_SERVING,
                timeout=15,
            )
            error = rpc_error(
                lambda: coordinator.stub.StartWorkflow(
                    pb.StartWorkflowRequest(workflow_id="standby-1", name="t"),
                    timeout=RPC_TIMEOUT,
                )
            )
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "standby" in (error.details() or "")
            assert coordinator.process.wait(timeout=30) == 1
        finally:
            coordinator.stop()
        log = coordinator.log()
        assert "error: no read-write database within 8s" in log
        assert "is a standby" in log
        assert "Traceback" not in log
    finally:
        pair.close()


def test_a_failing_background_loop_is_logged_counted_and_restarted() -> None:
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # healthy from the third run on

    async def scenario() -> None:
        task = asyncio.create_task(
            background.supervise("test-flaky", flaky, first_backoff=0.05, max_backoff=0.1)
        )
        try:
            for _ in range(200):
                if len(runs) >= 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()

    before = metrics.BACKGROUND_FAILURES.labels("test-flaky")._value.get()
    asyncio.run(scenario())
    assert len(runs) == 3
    assert metrics.BACKGROUND_FAILURES.labels("test-flaky")._value.get() - before == 2


def test_a_commit_the_synchronous_standby_never_confirmed_is_not_reported_as_done() -> None:
    """With the standby gone, a COMMIT waits for it; when the request's deadline cancels that
    wait, Postgres keeps the commit locally and says so only in a WARNING. The caller gets
    UNAVAILABLE (outcome unknown), never success: a failover now would lose the row."""
    pair = ReplicatedPostgres(synchronous=True)
    try:

        async def scenario() -> None:
            async with open_pool(pair.primary.url) as pool:
                async with pool.connection() as conn:
                    await conn.execute("CREATE TABLE IF NOT EXISTS unconfirmed (x int)")
                await asyncio.to_thread(pair.standby.stop)
                loop = asyncio.get_running_loop()
                db.DEADLINE.set(loop.time() + 0.5)
                with pytest.raises(db.CommitUnconfirmed) as caught:
                    async with pool.connection() as conn, conn.transaction():
                        await conn.execute("INSERT INTO unconfirmed VALUES (1)")
                assert_unavailable(caught.value)
                assert conn.closed
                db.DEADLINE.set(None)
                # Committed here, unknown to the standby: only a re-read can tell.
                async with pool.connection() as other:
                    cur = await other.execute("SELECT count(*) FROM unconfirmed")
                    assert await cur.fetchone() == (1,)

        asyncio.run(scenario())
    finally:
        pair.close()


def test_work_without_a_deadline_is_cancelled_after_the_pools_call_timeout(
    database_url: str,
) -> None:
    """A Session stream's calls carry no deadline of their own: the pool's call_timeout
    bounds their database work instead."""

    async def scenario() -> float:
        async with (
            open_pool(database_url) as pool,
            await psycopg.AsyncConnection.connect(database_url) as locker,
        ):
            pool.call_timeout = 0.5
            await locker.execute("CREATE TABLE IF NOT EXISTS bound_probe (id int PRIMARY KEY)")
            await locker.execute("INSERT INTO bound_probe VALUES (1) ON CONFLICT DO NOTHING")
            await locker.commit()
            await locker.execute("SELECT * FROM bound_probe WHERE id = 1 FOR UPDATE")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(psycopg.errors.QueryCanceled):
                async with pool.connection() as conn:
                    await conn.execute("UPDATE bound_probe SET id = 1 WHERE id = 1")
            took = loop.time() - started
            assert conn.closed
            await locker.rollback()
            return took

    took = asyncio.run(scenario())
    assert 0.4 < took < 3.0, took
