"""Builds and runs the gRPC server: the service, health, reflection, and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coordinator import tls
from coordinator.config import Config
from coordinator.notify import Hub, Listener
from coordinator.service import CoordinatorService
from coordinator.store import db
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CoordinatorService"].full_name
# Room for the largest payload plus the rest of a message, and for a history page.
_MESSAGE_SLACK = 64 * 1024


async def serve(config: Config, database_url: str, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives, then shut down within the grace."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    applied = await db.migrate(database_url)
    if applied:
        log.info("applied migrations %s", applied)
    pool = await db.open_pool(database_url, config.pool_min_size, config.pool_max_size)
    hub = Hub()
    listener = Listener(database_url, hub)
    listen_task = asyncio.create_task(listener.run(), name="listen")

    # A history page is its budget plus at most one more step.
    max_message = config.history_budget_bytes + config.max_payload_bytes + _MESSAGE_SLACK
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_payload_bytes + _MESSAGE_SLACK),
            ("grpc.max_send_message_length", max_message),
        ]
    )
    pb_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorService(pool, hub, config), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    credentials = tls.server_credentials(config)
    if credentials is None:
        port = server.add_insecure_port(config.listen)
    else:
        port = server.add_secure_port(config.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        host = config.listen.rsplit(":", 1)[0]
        log.info("coordinator ready on %s:%d", host, port)
        await stop.wait()
        log.info("shutting down (grace %.1fs)", config.shutdown_grace_seconds)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(config.shutdown_grace_seconds)
    finally:
        listen_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen_task
        await pool.close()
        log.info("coordinator stopped")
