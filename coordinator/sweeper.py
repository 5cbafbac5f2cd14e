"""Time-driven upkeep: cancel workflows past their deadline, prune dead worker sessions."""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from coordinator.config import Config
from coordinator.notify import Hub, workflow_topic
from coordinator.store import db, management, workers

log = logging.getLogger(__name__)

# Pruning needs no hurry: once a minute is plenty.
_PRUNE_EVERY = 60


async def run(pool: AsyncConnectionPool, hub: Hub, config: Config) -> None:
    """Sweep every `config.sweep_seconds` until cancelled; a database outage only delays it."""
    rounds = 0
    while True:
        await asyncio.sleep(config.sweep_seconds)
        try:
            for namespace, workflow_id in await management.cancel_expired(pool):
                log.info(
                    "workflow %s timed out: cancelled",
                    workflow_id,
                    extra={"workflow_id": workflow_id, "namespace": namespace},
                )
                hub.publish(workflow_topic(namespace, workflow_id))
            rounds += 1
            if rounds % _PRUNE_EVERY == 0:
                await workers.prune(pool)
        except Exception as exc:
            why = db.unavailable_reason(exc)
            if why is None:
                raise  # a bug: the supervisor (coordinator/background.py) logs and restarts
            log.warning("sweep skipped: database unavailable (%s)", why)
