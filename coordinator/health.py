"""Health that tells the truth: SERVING only while the database answers and LISTEN is up.

A background task probes the database through the pool every `health_probe_seconds` with
a bounded `SELECT 1`, combines that with the state of the LISTEN connection, and sets the
gRPC health status of every service name to match. Transitions are logged once.

The probe cannot hang the monitor: it runs as its own task that the monitor stops waiting
for after `probe_timeout` (a query being cancelled may take psycopg a while to clean up;
no second probe starts until it has), and pool checkout has the same bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import psycopg
from grpc_health.v1 import health, health_pb2
from psycopg_pool import AsyncConnectionPool

from coordinator.notify import Listener
from coordinator.store import db

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Longest a probe may take, pool checkout included, before it counts as failed.
PROBE_TIMEOUT_SECONDS = 2.0


async def probe_database(pool: AsyncConnectionPool, timeout: float) -> None:
    """Run `SELECT 1` through the pool; raises if that fails or takes over `timeout` seconds.

    A connection the database dropped while it sat idle in the pool fails on first use (and
    the pool discards it), so such failures are retried at once with the next connection:
    after an outage one probe clears every stale connection instead of one per interval.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempts = pool.max_size + 1
    for attempt in range(attempts):
        try:
            async with pool.connection(timeout=deadline - loop.time()) as conn:
                await conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            # Only a dead pooled connection is worth another try; a refusal is the answer.
            if isinstance(exc, db.ServerRefused):
                raise
            if attempt == attempts - 1 or loop.time() >= deadline:
                raise


class HealthMonitor:
    """Keeps `servicer`'s status for `services` in line with the database and LISTEN."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        services: Iterable[str],
        pool: AsyncConnectionPool,
        listener: Listener,
        *,
        interval: float,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
        on_first_serving: Callable[[], None] | None = None,
    ) -> None:
        self._servicer = servicer
        self._services = tuple(services)
        self._pool = pool
        self._listener = listener
        self._interval = interval
        self._probe_timeout = probe_timeout
        self._on_first_serving = on_first_serving
        self._probe: asyncio.Task[None] | None = None
        # None until the first check; then whether the last status set was SERVING.
        self.serving: bool | None = None
        self._ever_served = False

    async def set_not_serving(self) -> None:
        """Report NOT_SERVING for every service (before the first check)."""
        for name in self._services:
            await self._servicer.set(name, NOT_SERVING)

    async def run(self) -> None:
        """Check, report and pause, until cancelled."""
        try:
            while True:
                await self._report(await self.check())
                await self._pause()
        finally:
            if self._probe is not None:
                self._probe.cancel()

    async def check(self) -> str | None:
        """None when healthy, else what is wrong."""
        if not self._listener.connected.is_set():
            # No need to wait for a probe: readers would miss other coordinators' writes.
            return f"the LISTEN connection is down: {self._listener.problem or 'reconnecting'}"
        return await self._probe_once()

    async def _probe_once(self) -> str | None:
        if self._probe is not None and not self._probe.done():
            return "the previous database probe has not finished"
        task = asyncio.create_task(
            probe_database(self._pool, self._probe_timeout), name="health-probe"
        )
        # Retrieve the outcome even of a probe nobody waits for any more.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._probe = task
        done, _ = await asyncio.wait({task}, timeout=self._probe_timeout)
        if not done:
            task.cancel()
            return f"the database did not answer within {self._probe_timeout:g}s"
        error = task.exception()
        if error is None:
            return None
        why = db.unavailable_reason(error) or f"{type(error).__name__}: {error}"
        return f"the database probe failed: {why}"

    async def _report(self, problem: str | None) -> None:
        serving = problem is None
        if serving == self.serving:
            return
        if serving:
            log.info("health: SERVING")
        elif self.serving is None:
            # Start-up: the listener is usually still connecting; nothing is wrong yet.
            log.debug("health: NOT_SERVING until ready (%s)", problem)
        else:
            log.warning("health: NOT_SERVING (%s)", problem)
        self.serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in self._services:
            await self._servicer.set(name, status)
        if serving and not self._ever_served:
            self._ever_served = True
            if self._on_first_serving is not None:
                self._on_first_serving()

    async def _pause(self) -> None:
        """Sleep one interval; while LISTEN is down, wake as soon as it is back."""
        connected = self._listener.connected
        if connected.is_set():
            await asyncio.sleep(self._interval)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(connected.wait(), self._interval)
