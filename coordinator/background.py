"""Supervised background loops: a loop that fails is logged, counted and started again.

Every long-running task of the coordinator (LISTEN, health, sweeper, and whatever loop is
added later) runs under `supervise`, so no database error, bug or unexpected return can
end one silently while the process goes on serving without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from coordinator import metrics

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A run that lasted this long was healthy: the next failure starts the backoff afresh.
HEALTHY_AFTER = 60.0


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    first_backoff: float = FIRST_BACKOFF,
    max_backoff: float = MAX_BACKOFF,
) -> None:
    """Run `run()` until cancelled; after it raises (or returns), log it, count it in
    durable_background_task_failures{task=name}, and start it again after a backoff that
    doubles up to `max_backoff`."""
    loop = asyncio.get_running_loop()
    backoff = first_backoff
    while True:
        started = loop.time()
        try:
            await run()
            failure = None
        except Exception as exc:
            failure = exc
        if loop.time() - started >= HEALTHY_AFTER:
            backoff = first_backoff
        if failure is None:
            log.error("background task %s ended unexpectedly; restarting in %.1fs", name, backoff)
        else:
            log.error(
                "background task %s failed; restarting in %.1fs",
                name,
                backoff,
                exc_info=failure,
            )
        metrics.BACKGROUND_FAILURES.labels(name).inc()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)


def start(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """`supervise(name, run)` as a task named `name`; cancel it to stop the loop."""
    return asyncio.create_task(supervise(name, run), name=name)
