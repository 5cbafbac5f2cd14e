"""The tick loop every coordinator runs: start the workflows of due schedule ticks.

It sleeps until the earliest next tick of any schedule, at most `max_idle` seconds (so a
schedule created or resumed through another coordinator is seen within that), and wakes
at once when this coordinator changes a schedule. Which coordinator starts a tick does not
matter: each due schedule is started by whoever locks it first, exactly once per tick
(coordinator/store/schedules.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg_pool import AsyncConnectionPool

from coordinator.store import schedules

log = logging.getLogger(__name__)

# After an error the loop waits this long, doubling up to the maximum, before trying again.
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
_MIN_WAIT = 0.02
# The longest the loop sleeps: a schedule created or resumed through another coordinator
# is seen within this (that coordinator's own loop sees it at once).
MAX_IDLE_SECONDS = 1.0


async def run(pool: AsyncConnectionPool, wake: asyncio.Event, *, max_idle: float) -> None:
    """Start due ticks until cancelled. Never ends on an error: a database outage or a
    failover only delays ticks (late ones are then caught up per their policy)."""
    backoff = _FIRST_BACKOFF
    while True:
        try:
            while (done := await schedules.start_due(pool)).schedules:
                if done.started:
                    log.info("started %d scheduled workflow(s)", done.started)
            now, next_at = await schedules.next_due(pool)
            wait = max_idle if next_at is None else (next_at - now).total_seconds()
            # A floor, so a due schedule another coordinator holds locked is not spun on.
            wait = min(max(wait, _MIN_WAIT), max_idle)
            backoff = _FIRST_BACKOFF
        except Exception as exc:  # the loop must outlive any error; it says which
            log.warning("schedule ticks delayed: %s: %s", type(exc).__name__, exc)
            wait, backoff = backoff, min(backoff * 2, _MAX_BACKOFF)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), wait)
        wake.clear()
