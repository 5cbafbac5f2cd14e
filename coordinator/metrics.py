"""Prometheus metrics: the metric objects, and the /metrics endpoint started by server.py.

RPC metrics are recorded by the RPC edge (coordinator/edge.py) for every CoordinatorService
call; the process's live state (hub waiters, pool usage, the LISTEN connection) is read at
scrape time by a collector registered while the endpoint runs. Everything is in
prometheus_client's default registry, which also carries its process_* and python_* metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:  # at run time notify imports the store, which records metrics here
    from coordinator.notify import Hub, Listener

log = logging.getLogger(__name__)

# Unary calls take milliseconds; AwaitWorkflow and GetEvent last as long as they wait.
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    float("inf"),
)
# How long a scrape waits for the event loop to report the live state.
_SNAPSHOT_TIMEOUT = 2.0

RPCS = Counter(
    "durable_rpc",
    "CoordinatorService calls finished, by method and gRPC status code",
    ["method", "code"],
)
RPC_DURATION = Histogram(
    "durable_rpc_duration_seconds",
    "CoordinatorService call duration by method (a stream: until it ends)",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)
OPEN_STREAMS = Gauge(
    "durable_open_streams",
    "Server-streaming calls in progress (GetEvent), by method",
    ["method"],
)

GROUP_COMMIT_BATCH = Histogram(
    "durable_group_commit_batch_size",
    "Requests written per group-commit transaction, by method (1: the request went alone)",
    ["method"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, float("inf")),
)

EVENT_VALUES = Counter(
    "durable_event_values_delivered",
    "Values GetEvent sent, by source: 'handed' came with the wake-up (a SetEvent on this "
    "coordinator, or a NOTIFY carrying the value), 'read' from the database",
    ["source"],
)
EVENT_VALUE_HANDED = EVENT_VALUES.labels("handed")
EVENT_VALUE_READ = EVENT_VALUES.labels("read")

DATABASE_REFUSED = Counter(
    "durable_database_connections_refused",
    "New database connections the guard refused, by reason: 'standby' (in recovery), "
    "'read_only', 'old_timeline' (a diverged old primary after a failover)",
    ["reason"],
)
DEADLINE_CANCELS = Counter(
    "durable_database_deadline_cancels",
    "Database statements cancelled because the request's deadline passed while they ran",
)
BACKGROUND_FAILURES = Counter(
    "durable_background_task_failures",
    "Times a background task (listen, health, sweep...) failed and was restarted, by task",
    ["task"],
)

# Retention (coordinator/operations/retention.py): what the clean-up loop and DeleteWorkflow
# deleted, by `by` ("retention": the loop; "delete_workflow": the RPC).
RETENTION_DELETED_WORKFLOWS = Counter(
    "durable_retention_deleted_workflows",
    "Finished workflows deleted, by who deleted them: 'retention' (the clean-up loop) or "
    "'delete_workflow' (the RPC)",
    ["by"],
)
RETENTION_DELETED_ROWS = Counter(
    "durable_retention_deleted_rows",
    "Rows deleted with those workflows, by table (workflows, steps, messages...)",
    ["table"],
)
RETENTION_BATCH_DURATION = Histogram(
    "durable_retention_batch_duration_seconds",
    "Duration of one clean-up transaction (at most --retention-batch-size workflows)",
    buckets=_LATENCY_BUCKETS,
)


@functools.cache
def _rpc_children(method: str, code: str) -> tuple[Counter, Histogram]:
    # labels() builds and looks up the label tuple under a lock on every call (~8 us, about
    # 1 % of a unary call); the children it returns live as long as their metric.
    return RPCS.labels(method, code), RPC_DURATION.labels(method)


def rpc_finished(method: str, code: str, seconds: float) -> None:
    calls, duration = _rpc_children(method, code)
    calls.inc()
    duration.observe(seconds)


def parse_listen(listen: str) -> tuple[str, int]:
    """'host:port' (host may be '[v6]' or empty for all interfaces) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics address {listen!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port)


@dataclass(frozen=True)
class _Snapshot:
    waiters: int
    pool: dict[str, int]
    listen_connected: bool


class _LiveState(Collector):
    """Reads the hub, the pool and the listener at scrape time.

    They belong to the event loop, and a scrape runs on the HTTP server's thread, so the
    values are read by a callback on the loop rather than from here.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: AsyncConnectionPool,
        hub: Hub,
        listener: Listener,
    ) -> None:
        self._loop = loop
        self._pool = pool
        self._hub = hub
        self._listener = listener

    def _read(self) -> _Snapshot:
        return _Snapshot(
            waiters=self._hub.waiter_count,
            pool=self._pool.get_stats(),
            listen_connected=self._listener.connected.is_set(),
        )

    def _snapshot(self) -> _Snapshot | None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None  # the usual case: a scrape, on the HTTP server's thread
        if running is self._loop:
            return self._read()
        future: concurrent.futures.Future[_Snapshot] = concurrent.futures.Future()

        def read() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self._read())
                except Exception as exc:
                    future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(read)
            return future.result(timeout=_SNAPSHOT_TIMEOUT)
        except (RuntimeError, concurrent.futures.TimeoutError):
            # The loop is closed or too busy to answer: leave these metrics out.
            future.cancel()
            return None

    def _families(self, snapshot: _Snapshot | None) -> Iterator[Metric]:
        def gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, documentation)
            if value is not None:
                family.add_metric([], value)
            return family

        def pool(key: str) -> int | None:
            return None if snapshot is None else snapshot.pool.get(key, 0)

        yield gauge(
            "durable_hub_waiters",
            "Wake-up subscriptions in this process's hub (Hub.waiter_count): "
            "an open GetEvent holds two, an AwaitWorkflow one",
            None if snapshot is None else snapshot.waiters,
        )
        yield gauge(
            "durable_listen_connected",
            "1 while the LISTEN connection for cross-coordinator wake-ups is up, else 0",
            None if snapshot is None else int(snapshot.listen_connected),
        )
        yield gauge("durable_db_pool_size", "Connections in the pool", pool("pool_size"))
        yield gauge("durable_db_pool_max", "Largest size the pool may grow to", pool("pool_max"))
        yield gauge(
            "durable_db_pool_available", "Idle connections in the pool", pool("pool_available")
        )
        yield gauge(
            "durable_db_pool_requests_waiting",
            "Requests queued for a pool connection",
            pool("requests_waiting"),
        )

    def describe(self) -> Iterable[Metric]:
        # Registration asks for the names; answering without a snapshot keeps it off the loop.
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._snapshot()))


class MetricsEndpoint:
    """prometheus_client's HTTP server on its own daemon thread, serving GET /metrics."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, collector: Collector):
        self._server = server
        self._thread = thread
        self._collector = collector

    @property
    def port(self) -> int:
        return self._server.server_port

    async def close(self) -> None:
        """Stop serving, free the port, and stop reading the live state."""
        # shutdown() blocks until the serving thread notices, so not on the loop.
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        self._thread.join(timeout=5)
        REGISTRY.unregister(self._collector)


def start(listen: str, pool: AsyncConnectionPool, hub: Hub, listener: Listener) -> MetricsEndpoint:
    """Serve /metrics on `listen` ('host:port') until close()."""
    host, port = parse_listen(listen)
    collector = _LiveState(asyncio.get_running_loop(), pool, hub, listener)
    REGISTRY.register(collector)
    try:
        server, thread = prometheus_client.start_http_server(port, addr=host)
    except BaseException:
        REGISTRY.unregister(collector)
        raise
    endpoint = MetricsEndpoint(server, thread, collector)
    log.info("metrics on %s port %d, path /metrics", host, endpoint.port)
    return endpoint
