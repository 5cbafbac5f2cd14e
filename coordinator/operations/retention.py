"""Retention of finished workflows (SetRetention, GetRetention, the clean-up loop) and
DeleteWorkflow.

Every coordinator runs the clean-up loop (`run`, supervised by coordinator/background.py).
A pass reads the policies in force (each namespace's own, and the configured default for
the other namespaces holding finished workflows), then for each namespace deletes its
expired workflows in batches of `retention_batch_size`, one transaction each, until a batch
comes back short. Batches lock their workflows with SKIP LOCKED, so coordinators running
passes at once share the work and never delete a row twice (coordinator/store/retention.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from psycopg_pool import AsyncConnectionPool

from coordinator import metrics, validation, wire
from coordinator.config import Config
from coordinator.errors import InvalidArgument
from coordinator.store import db
from coordinator.store import retention as store
from durable.v1 import operations_pb2 as opb

if TYPE_CHECKING:
    from coordinator.operations.service import OperationsService

log = logging.getLogger(__name__)

MIN_RETENTION_SECONDS = 60.0
MAX_RETENTION_SECONDS = 100 * 365.25 * 86400.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w', or bare seconds, as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m or 3600s")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _policy(own: timedelta | None, default_seconds: float | None) -> opb.RetentionPolicy:
    if own is not None:
        return opb.RetentionPolicy(finished_after=wire.duration(own.total_seconds()))
    if default_seconds is not None:
        return opb.RetentionPolicy(finished_after=wire.duration(default_seconds), from_config=True)
    return opb.RetentionPolicy()


async def set_retention(
    service: OperationsService, ns: str, request: opb.SetRetentionRequest
) -> opb.SetRetentionResponse:
    present = request.HasField("finished_after")
    if request.clear:
        if present:
            raise InvalidArgument("finished_after", "must not be set with clear")
        seconds = None
    elif not present:
        raise InvalidArgument("finished_after", "required (or set clear to remove the policy)")
    else:
        seconds = validation.duration(
            True,
            request.finished_after,
            "finished_after",
            default=0.0,
            minimum=MIN_RETENTION_SECONDS,
            maximum=MAX_RETENTION_SECONDS,
        )
    await store.set_policy(service.pool, ns, seconds)
    own = None if seconds is None else timedelta(seconds=seconds)
    return opb.SetRetentionResponse(policy=_policy(own, service.config.retention_seconds))


async def get_retention(
    service: OperationsService, ns: str, request: opb.GetRetentionRequest
) -> opb.GetRetentionResponse:
    own = await store.get_policy(service.pool, ns)
    return opb.GetRetentionResponse(policy=_policy(own, service.config.retention_seconds))


async def delete_workflow(
    service: OperationsService, ns: str, request: opb.DeleteWorkflowRequest
) -> opb.DeleteWorkflowResponse:
    workflow_id = validation.workflow_id(request.workflow_id)
    deleted = await store.delete_workflow(service.pool, ns, workflow_id, request.include_children)
    _count(deleted, "delete_workflow")
    if deleted.workflows:
        log.info(
            "deleted workflow %s (%d workflows, %d rows)",
            workflow_id,
            deleted.workflows,
            deleted.total_rows,
            extra={"workflow_id": workflow_id, "namespace": ns},
        )
    return opb.DeleteWorkflowResponse(deleted=deleted.workflows)


def _count(deleted: store.Deleted, by: str) -> None:
    if deleted.workflows:
        metrics.RETENTION_DELETED_WORKFLOWS.labels(by).inc(deleted.workflows)
    for table, rows in deleted.rows.items():
        if rows:
            metrics.RETENTION_DELETED_ROWS.labels(table).inc(rows)


# --- the clean-up loop --------------------------------------------------------------------


async def clean_up(pool: AsyncConnectionPool, config: Config) -> store.Deleted:
    """One pass: delete every expired finished workflow, batch by batch."""
    default = (
        None if config.retention_seconds is None else timedelta(seconds=config.retention_seconds)
    )
    total = store.Deleted()
    batches = 0
    started = time.monotonic()
    for namespace, after in await store.policies(pool, default):
        while True:
            batch_started = time.monotonic()
            deleted = await store.delete_expired_batch(
                pool, namespace, after, config.retention_batch_size
            )
            took = time.monotonic() - batch_started
            if deleted.workflows:
                metrics.RETENTION_BATCH_DURATION.observe(took)
                batches += 1
            _count(deleted, "retention")
            total.add(deleted)
            if deleted.workflows < config.retention_batch_size:
                break
            # Catching up on a backlog: pause between full batches, `pause_factor` times as
            # long as the batch took, so the loop leaves the database to the calls.
            await asyncio.sleep(took * config.retention_pause_factor)
    if total.workflows:
        log.info(
            "retention: deleted %d expired workflows (%d rows) in %d batches, %.2fs",
            total.workflows,
            total.total_rows,
            batches,
            time.monotonic() - started,
        )
    return total


async def run(pool: AsyncConnectionPool, config: Config) -> None:
    """A pass every `config.retention_interval_seconds` until cancelled; a database outage
    only delays it (a bug raises, for the supervisor to log and restart)."""
    while True:
        try:
            await clean_up(pool, config)
        except Exception as exc:
            why = db.unavailable_reason(exc)
            if why is None:
                raise
            log.warning("retention pass skipped: database unavailable (%s)", why)
        await asyncio.sleep(config.retention_interval_seconds)
