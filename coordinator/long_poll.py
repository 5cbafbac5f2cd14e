"""Calls that wait for a value with a deadline: the loops behind GetEvent, Recv, AwaitWorkflow
and PollWork.

Every loop has the same shape: subscribe to the hub's topics (coordinator/notify.py), arm
the waiter, look in the database, and sleep until a topic is published or the deadline
passes; then look again. Arming before the look means no publish can slip in between.
The subscription is a `with` block, so the waiter is removed however the loop ends: with
an answer, an error, a cancelled call or a closed stream (CancelledError or GeneratorExit).

A deadline is a time on the event loop's clock, computed once at the RPC edge from the
call's timeout (`deadline_after`) and passed down; every wait is bounded by it. A wait
checkpointed as a step of a running workflow (`read_event_as_step`, `receive`) takes its
timeout instead: the database fixes its deadline on the first call (store/waits.py), so a
workflow resumed after its worker died waits only for what is left of it.

The servicer (coordinator/service.py) validates the request, calls one of these and
builds the reply from what it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from coordinator import metrics
from coordinator.notify import Hub, event_topic, message_topic, work_topic, workflow_topic
from coordinator.store import events, management, messages, queues, waits, workers, workflows
from coordinator.store.records import (
    EventSnapshot,
    EventValue,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
)

# Wake this long after a due time, so the claim's clock (the database's) has passed it.
_DUE_MARGIN = 0.001


def deadline_after(timeout: float) -> float:
    """The event loop's time `timeout` seconds from now: a call's deadline, computed once."""
    return asyncio.get_running_loop().time() + timeout


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()


@dataclass(frozen=True)
class NoValue:
    """A wait for an event that ended without a value: its deadline passed (`finished` is
    None), or the workflow finished, so no value can come any more."""

    finished: Status | None = None


async def event_values(
    pool: AsyncConnectionPool,
    hub: Hub,
    ns: str,
    workflow_id: str,
    key: str,
    *,
    after: int,
    follow: bool,
    deadline: float,
    from_first: bool = False,
) -> AsyncGenerator[EventValue | NoValue, None]:
    """The values of an event newer than version `after`: the first one, or with `follow`
    every one as it is set, until a NoValue ends them (a value ends them without follow).
    A follower `from_first` starts at version 1 (the whole history) whatever `after` is.

    Close it with `contextlib.aclosing`, so that a closed stream removes its waiter at once.
    """
    # A resuming follower must not skip values, so it reads history; a fresh reader
    # starts from the latest value and reads history from there on.
    from_history = follow and (after > 0 or from_first)
    topics = (event_topic(ns, workflow_id, key), workflow_topic(ns, workflow_id))
    with hub.subscribe(*topics) as waiter:
        while True:
            waiter.arm()
            handed = waiter.take_value()
            if handed is not None and (
                handed.version == after + 1 or (not follow and handed.version > after)
            ):
                # The value that woke us came with the wake-up: no read. A follower
                # takes only the very next version, so none is skipped.
                seen = EventSnapshot(None, [handed], has_more=False)
                metrics.EVENT_VALUE_HANDED.inc()
            else:
                seen = await events.read(
                    pool, ns, workflow_id, key, after, from_history=from_history
                )
                metrics.EVENT_VALUE_READ.inc(len(seen.values))
            for value in seen.values:
                # Seen before it is sent: the NOTIFY echo of a value this coordinator
                # handed over often lands while it is being sent, and must not wake
                # the reader for a read that finds nothing new.
                after = waiter.seen_version = value.version
                yield value
            if seen.values and not follow:
                return
            from_history = follow
            if seen.has_more:
                continue
            if seen.status is not None and seen.status.finished:
                # Values are only set while PENDING, and this snapshot saw them all.
                yield NoValue(finished=seen.status)
                return
            remaining = _remaining(deadline)
            if remaining <= 0:
                yield NoValue()
                return
            await waiter.wait(remaining)


async def read_event_as_step(
    pool: AsyncConnectionPool,
    hub: Hub,
    ns: str,
    workflow_id: str,
    key: str,
    timeout: float,
    *,
    caller_id: str,
    step_id: int,
    executor: str,
) -> StepRecord | EventValue | NoValue:
    """GetEvent from a running workflow: one value (or none), checkpointed as the
    caller's GET_EVENT step with the wait's deadline; a replay answers at once.

    Returns the recorded step when it was recorded before (by a replay or a concurrent
    call), else what this call saw and recorded.
    """
    begun = await waits.begin(
        pool,
        ns,
        caller_id,
        step_id,
        StepKind.GET_EVENT,
        key,
        timeout,
        executor_id=executor,
    )
    if isinstance(begun, StepRecord):
        return begun
    deadline = deadline_after(begun.remaining)
    # The caller's own topic too: cancelling it ends the wait (with WORKFLOW_NOT_PENDING).
    topics = (
        event_topic(ns, workflow_id, key),
        workflow_topic(ns, workflow_id),
        workflow_topic(ns, caller_id),
    )
    with hub.subscribe(*topics) as waiter:
        while True:
            waiter.arm()
            seen = await events.read(pool, ns, workflow_id, key, 0, from_history=False)
            finished = seen.status is not None and seen.status.finished
            remaining = _remaining(deadline)
            if seen.values or finished or remaining <= 0:
                break
            if await waits.settled(pool, ns, caller_id, step_id, executor):
                break  # recorded by a concurrent call, or refused: recording says which
            await waiter.wait(remaining)
    value = seen.values[0].value if seen.values else waits.JSON_NULL
    step, already = await waits.record(
        pool,
        ns,
        caller_id,
        step_id,
        StepKind.GET_EVENT,
        key,
        value,
        begun.at,
        timed_out=not seen.values,
        executor_id=executor,
    )
    if already:
        return step
    if seen.values:
        return seen.values[0]
    if finished:
        # Recorded as "no value" (replays get timed_out); this caller learns why.
        assert seen.status is not None
        return NoValue(finished=seen.status)
    return NoValue()


async def receive(
    pool: AsyncConnectionPool,
    hub: Hub,
    ns: str,
    workflow_id: str,
    step_id: int,
    topic: str,
    timeout: float,
    *,
    executor: str,
) -> messages.Received:
    """Recv: the workflow's next message on `topic`, consumed and checkpointed as its RECV
    step, or none once the wait's deadline passes; a replay answers at once."""
    begun = await waits.begin(
        pool,
        ns,
        workflow_id,
        step_id,
        StepKind.RECV,
        topic,
        timeout,
        executor_id=executor,
    )
    if isinstance(begun, StepRecord):
        return messages.Received(begun, already_recorded=True)
    deadline = deadline_after(begun.remaining)
    # The workflow's own topic too: cancelling it ends the wait (WORKFLOW_NOT_PENDING).
    topics = (message_topic(ns, workflow_id, topic), workflow_topic(ns, workflow_id))
    with hub.subscribe(*topics) as waiter:
        while True:
            waiter.arm()
            remaining = _remaining(deadline)
            received = await messages.receive(
                pool,
                ns,
                workflow_id,
                step_id,
                topic,
                begun.at,
                give_up=remaining <= 0,
                executor_id=executor,
            )
            if received is not None:
                break
            await waiter.wait(remaining)
    if not received.already_recorded:
        # Wakes other calls waiting on this step here (others hear the NOTIFY).
        hub.publish(message_topic(ns, workflow_id, topic))
    return received


async def finished_workflow(
    pool: AsyncConnectionPool, hub: Hub, ns: str, workflow_id: str, *, deadline: float
) -> WorkflowRecord:
    """AwaitWorkflow: the workflow once it has finished, or as it is when the deadline
    passes (its status says which)."""
    with hub.subscribe(workflow_topic(ns, workflow_id)) as waiter:
        while True:
            waiter.arm()
            record = await workflows.get(pool, ns, workflow_id)
            remaining = _remaining(deadline)
            if record.status.finished or remaining <= 0:
                return record
            await waiter.wait(remaining)


async def claim_work(
    pool: AsyncConnectionPool,
    hub: Hub,
    ns: str,
    executor: str,
    wanted: int,
    *,
    deadline: float,
    max_recovery_attempts: int,
    sweep_seconds: float,
) -> list[WorkflowRecord]:
    """PollWork: up to `wanted` workflows claimed for `executor` (ones it may run whose
    executor is gone or that wait unqueued, then ENQUEUED ones of the queues it serves) as
    soon as there is one; none once the deadline passes. Workflows out of recovery attempts
    are dead-lettered on the way, and their waiters woken."""
    with hub.subscribe(work_topic(ns)) as waiter:
        while True:
            waiter.arm()
            took = await workers.claim(pool, ns, executor, wanted, max_recovery_attempts)
            claimed, dead = took.claimed, took.dead
            if len(claimed) < wanted:
                claimed += await queues.claim(pool, ns, executor, wanted - len(claimed))
            if dead:
                await management.notify_status(pool, ns, [w.workflow_id for w in dead])
                for record in dead:
                    hub.publish(workflow_topic(ns, record.workflow_id))
            remaining = _remaining(deadline)
            if claimed or remaining <= 0:
                return claimed
            # ENQUEUED work wakes us at once; a lapsed lease is noticed at the next look.
            # A delayed workflow falling due sends no NOTIFY: every poller of every
            # coordinator wakes when it is due (read before this claim, so none slips
            # by) and claims again; SKIP LOCKED hands it to one of them.
            wait = min(remaining, sweep_seconds)
            if took.next_due is not None:
                wait = min(wait, took.next_due + _DUE_MARGIN)
            await waiter.wait(wait)
