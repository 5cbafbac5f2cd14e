"""Builds and runs the gRPC server: the service, health, reflection, and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coordinator import background, metrics, session, sweeper, tls, tracing
from coordinator.config import Config
from coordinator.health import HealthMonitor
from coordinator.notify import Hub, Listener
from coordinator.operations import retention
from coordinator.operations.service import OperationsService
from coordinator.schedules import ticker
from coordinator.schedules.service import ScheduleService
from coordinator.service import CoordinatorService
from coordinator.store import db
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from durable.v1 import schedules_pb2 as spb
from durable.v1 import schedules_pb2_grpc as spb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CoordinatorService"].full_name
SCHEDULE_SERVICE_NAME = spb.DESCRIPTOR.services_by_name["ScheduleService"].full_name
OPERATIONS_SERVICE_NAME = opb.DESCRIPTOR.services_by_name["OperationsService"].full_name
# Room for the largest payload plus the rest of a message, and for a history page.
_MESSAGE_SLACK = 64 * 1024
# Calls that have arrived but that the event loop has not yet accepted. grpc.aio accepts one
# call at a time, so a burst of new calls (clients re-opening thousands of GetEvent streams
# after a restart) queues in gRPC core, which by default drops queued calls at random past
# 1,000 and all past 3,000, with a bare CANCELLED the coordinator never sees. A queued call
# costs about 15 KiB; gRPC still cancels any left unaccepted for 30 s.
_MAX_PENDING_CALLS = 20_000


def _listening_on(listen: str, port: int) -> str:
    """The address served, for the log: a unix socket as given, else host and bound port."""
    if listen.startswith("unix"):  # unix:/path, unix://path, unix-abstract:name
        return listen
    return f"{listen.rsplit(':', 1)[0]}:{port}"


async def serve(config: Config, database_url: str, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives, then shut down within the grace."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    # The pool opens without waiting, and the server starts NOT_SERVING, before the database
    # is known to be usable: a URL whose hosts are all down, or only a standby, leaves the
    # coordinator up and saying so (health, UNAVAILABLE with the reason) while it waits.
    pool = db.new_pool(
        database_url,
        config.pool_min_size,
        config.pool_max_size,
        max_lifetime=config.pool_max_lifetime_seconds,
    )
    pool.not_ready = "waiting for a read-write database"
    pool.call_timeout = config.database_call_timeout_seconds or None
    await pool.open(wait=False)
    hub = Hub()
    listener = Listener(database_url, hub)
    # Observability: the /metrics endpoint (it reports the pool, so once the pool is open).
    metrics_endpoint = (
        metrics.start(config.metrics_listen, pool, hub, listener) if config.metrics_listen else None
    )

    # A history page is its budget plus at most one more step.
    max_message = config.history_budget_bytes + config.max_payload_bytes + _MESSAGE_SLACK
    # The largest payload, or a BatchedSession message of many small calls, with its rest.
    max_request = max(config.max_payload_bytes, session.MAX_BATCH_BYTES) + _MESSAGE_SLACK
    server = grpc.aio.server(
        interceptors=tracing.server_interceptors(config),  # Observability: OTel spans (--otel)
        options=[
            ("grpc.max_receive_message_length", max_request),
            ("grpc.max_send_message_length", max_message),
            ("grpc.server.max_pending_requests", _MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", _MAX_PENDING_CALLS),
        ],
    )
    pb_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorService(pool, hub, config), server)
    opb_grpc.add_OperationsServiceServicer_to_server(OperationsService(pool, hub, config), server)
    schedule_changed = asyncio.Event()  # wakes this coordinator's tick loop at once
    spb_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleService(pool, config, schedule_changed), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            SCHEDULE_SERVICE_NAME,
            OPERATIONS_SERVICE_NAME,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = tls.server_credentials(config)
    if credentials is None:
        port = server.add_insecure_port(config.listen)
    else:
        port = server.add_secure_port(config.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    where = _listening_on(config.listen, port)
    # SERVING only while the database answers and LISTEN is up (coordinator/health.py).
    monitor = HealthMonitor(
        health_servicer,
        ("", SERVICE_NAME),
        pool,
        listener,
        interval=config.health_probe_seconds,
        on_first_serving=lambda: log.info("coordinator ready on %s", where),
    )
    await monitor.set_not_serving()
    await server.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        applied = await _wait_for_database(database_url, config, stop, pool)
        if applied is None:
            return  # stopped before the database was ready
        if applied:
            log.info("applied migrations %s", applied)
        pool.not_ready = None
        # Supervised (coordinator/background.py): a failure is logged, counted, restarted.
        tasks = [
            background.start("listen", listener.run),
            background.start("health", monitor.run),
            # Workflow timeouts and worker-session pruning.
            background.start("sweep", lambda: sweeper.run(pool, hub, config)),
            # Cron schedules: start the workflows of due ticks.
            background.start(
                "schedules",
                lambda: ticker.run(pool, schedule_changed, max_idle=ticker.MAX_IDLE_SECONDS),
            ),
            # Retention: delete expired finished workflows in bounded batches.
            background.start("retention", lambda: retention.run(pool, config)),
        ]
        await stop.wait()
        log.info("shutting down (grace %.1fs)", config.shutdown_grace_seconds)
        for task in tasks[1:2]:  # health first: it must not flip back to SERVING
            task.cancel()
        await health_servicer.enter_graceful_shutdown()
        # Open GetEvent and AwaitWorkflow waits end now with UNAVAILABLE (SHUTTING_DOWN);
        # calls in flight get the grace to finish, new ones are refused.
        hub.close()
        await server.stop(config.shutdown_grace_seconds)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not tasks:
            await server.stop(0)
        if metrics_endpoint is not None:
            await metrics_endpoint.close()
        await pool.close()
        log.info("coordinator stopped")


async def _wait_for_database(
    database_url: str, config: Config, stop: asyncio.Event, pool: db.Pool
) -> list[int] | None:
    """Migrate once a read-write database answers (db.wait_and_migrate), telling callers
    meanwhile why not; None if a stop request came first."""

    def waiting(why: str) -> None:
        pool.not_ready = f"waiting for a read-write database: {why}"

    migrating = asyncio.ensure_future(
        db.wait_and_migrate(database_url, config.database_wait_seconds, on_wait=waiting)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({migrating, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not migrating.done():
        migrating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await migrating
        return None
    return migrating.result()
