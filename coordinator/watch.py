"""WatchWorkflows: a filtered stream of workflow status changes, resumable by cursor.

The changes come from the log a trigger appends to (durable.workflow_changes, migration
0010; coordinator/store/changes.py reads it in an order no late commit can get behind).
The stream subscribes to its namespace's topic in the hub, which the trigger's NOTIFY
feeds through each coordinator's LISTEN connection (so a change made through another
coordinator wakes it too), and reads the log after its position: at most MAX_BATCH rows
at a time, yielded before the next read, so a slow reader only slows its own reads and
holds one batch in memory, never a growing buffer. Nothing polls: the stream sleeps until
a notification, or, while the log holds changes of transactions still open (they become
readable when those end, which nothing announces), re-reads after a short, doubling pause.

A cursor is "<xid>.<seq>" (opaque to clients). One whose change is no longer kept (its
workflow deleted by retention or DeleteWorkflow) is refused with CURSOR_EXPIRED. The
stream's start position is sent as the initial metadata `durable-watch-cursor`, so a
client that loses the stream before any change resumes from there, not from a later now.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coordinator import long_poll, validation, wire, workflow_filter
from coordinator.errors import CursorExpired, InvalidArgument, ShuttingDown
from coordinator.notify import changes_topic
from coordinator.store import changes
from durable.v1 import coordinator_pb2 as pb

if TYPE_CHECKING:
    from coordinator.edge import Context
    from coordinator.service import CoordinatorService

# Log rows looked at per read (and so at most this many changes held per stream).
MAX_BATCH = 256
# Re-read pauses while changes of open transactions wait in the log.
_RECHECK_FIRST = 0.005
_RECHECK_MAX = 0.5
START_CURSOR_METADATA = "durable-watch-cursor"


def _response(change: changes.Change) -> pb.WatchWorkflowsResponse:
    workflow = wire.workflow(change.record)
    workflow.ClearField("input")
    workflow.ClearField("output")
    return pb.WatchWorkflowsResponse(
        change=pb.WorkflowChange(
            cursor=change.position.cursor(),
            workflow=workflow,
            change_time=wire.timestamp(change.changed_at),
        )
    )


async def watch_workflows(
    service: CoordinatorService,
    ns: str,
    request: pb.WatchWorkflowsRequest,
    context: Context | None = None,
) -> AsyncIterator[pb.WatchWorkflowsResponse]:
    pool, hub, config = service._pool, service._hub, service._config
    where = workflow_filter.from_request(request.filter, prefix="filter.")
    after: changes.Position | None = None
    if request.after_cursor:
        after = changes.Position.parse(request.after_cursor)
        if after is None:
            raise InvalidArgument("after_cursor", "not a cursor from a WorkflowChange")
    if request.HasField("timeout"):
        timeout = validation.timeout(True, request.timeout, "timeout", config.max_wait_seconds)
    else:
        timeout = config.max_wait_seconds
    deadline = long_poll.deadline_after(timeout)
    loop = asyncio.get_running_loop()
    # Subscribed before the start position is fixed, so no notification slips in between.
    with hub.subscribe(changes_topic(ns)) as waiter:
        seen: str | None = None  # the snapshot "now" was taken in
        if after is None:
            position, seen = await changes.now(pool)
        elif after.seq == 0 or await changes.exists(pool, ns, after):
            # seq 0: a stream's start position (sent as initial metadata), not a change.
            position = after
        else:
            raise CursorExpired(request.after_cursor)
        if context is not None:
            await context.send_initial_metadata(((START_CURSOR_METADATA, position.cursor()),))
        recheck = _RECHECK_FIRST
        while True:
            if hub.closed:
                raise ShuttingDown()
            waiter.arm()
            batch = await changes.read(pool, ns, where, position, MAX_BATCH, skip_seen_by=seen)
            for change in batch.changes:
                yield _response(change)
            position = batch.position
            if batch.more:
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield pb.WatchWorkflowsResponse(timed_out=pb.TimedOut())
                return
            if batch.pending:
                await waiter.wait(min(remaining, recheck))
                recheck = min(recheck * 2, _RECHECK_MAX)
            else:
                recheck = _RECHECK_FIRST
                await waiter.wait(remaining)
