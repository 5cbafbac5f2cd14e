"""Messages to workflows: Send (idempotent, optionally checkpointed as the sender's step)
and Recv (consumes the oldest message of a topic exactly once, as the receiver's step).

A message waits in durable.messages until a Recv of its destination and topic consumes
it: in one transaction the message is marked with the consuming step and the step is
recorded with the message as its output. Either both happen or neither, so a message is
never lost and never consumed twice, and a replayed Recv returns the recorded step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from coordinator.store import rows, waits
from coordinator.store.records import Payload, StepKind, StepRecord
from coordinator.store.steps import WRITABLE, resolve_unrecorded

MESSAGE_CHANNEL = "durable_message"

_NOTIFY = f"""pg_notify('{MESSAGE_CHANNEL}', json_build_object(
           'n', %(ns)s::text, 'w', %(dest)s::text, 't', %(topic)s::text)::text)"""

# NOTIFY is delivered at commit, to wake receivers on other coordinators.
_SEND = f"""
WITH sent AS (
    INSERT INTO durable.messages (destination_id, namespace, topic, encoding, data,
                                  idempotency_key)
    VALUES (%(dest)s, %(ns)s, %(topic)s, %(enc)s, %(data)s, %(key)s)
    ON CONFLICT (destination_id, namespace, idempotency_key)
       WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING message_id
)
SELECT message_id, {_NOTIFY} FROM sent"""

_SEND_STEP = f"""
INSERT INTO durable.steps (workflow_id, namespace, step_id, name, kind,
                           output_encoding, output_data)
SELECT %(wf)s, %(ns)s, %(step)s, %(topic)s, 'SEND', 'json', 'null'
 WHERE {WRITABLE}
ON CONFLICT (workflow_id, namespace, step_id) DO NOTHING
RETURNING {rows.STEP_COLUMNS}"""

# The oldest unconsumed message of the topic. FOR UPDATE without SKIP LOCKED on purpose:
# two calls for the same step must not take the first and second messages at once, since
# the loser's step write rolls back and the second would then be consumed before the
# first. Waiting on the lock is brief (one transaction); once the holder commits, the row
# is re-checked, found consumed and skipped.
_NEXT = """
SELECT message_id, encoding, data FROM durable.messages
 WHERE destination_id = %(wf)s AND namespace = %(ns)s AND topic = %(topic)s
   AND consumed_step_id IS NULL
 ORDER BY message_id
 LIMIT 1
 FOR UPDATE"""

_CONSUME = """
UPDATE durable.messages SET consumed_step_id = %(step)s
 WHERE destination_id = %(wf)s AND namespace = %(ns)s AND message_id = %(id)s"""

# A recorded RECV wakes other callers waiting on the same step, so they return it at once.
_NOTIFY_RECEIVED = f"SELECT {_NOTIFY}"


def default_idempotency_key(caller_workflow_id: str, caller_step_id: int) -> str:
    """The key of a send checkpointed as a workflow's step: one delivery per step."""
    return f"step:{caller_workflow_id}:{caller_step_id}"


@dataclass(frozen=True)
class Caller:
    """The running workflow's step a send is checkpointed as."""

    workflow_id: str
    step_id: int
    executor_id: str = ""


@dataclass(frozen=True)
class Sent:
    # False when nothing new was delivered (the key was used, or the caller's step was
    # recorded before).
    delivered: bool
    # With a caller: its SEND step.
    step: StepRecord | None = None


class _NotRecorded(Exception):
    """The step write did nothing: roll the transaction back, then find out why."""


class _NoMessage(Exception):
    """Nothing to consume yet: end the transaction."""


async def send(
    pool: AsyncConnectionPool,
    namespace: str,
    destination_id: str,
    topic: str,
    message: Payload,
    *,
    idempotency_key: str | None = None,
    caller: Caller | None = None,
) -> Sent:
    """Deliver `message` to `destination_id` (which need not exist) on `topic`.

    With `caller`, the send is recorded as the caller's step in the same transaction: a
    replayed step delivers nothing and returns the recorded step. Raises like any step
    write for a caller that may not record it.
    """
    params = {
        "ns": namespace,
        "dest": destination_id,
        "topic": topic,
        "enc": message.encoding,
        "data": message.data,
        "key": idempotency_key,
    }
    async with pool.connection() as conn:
        if caller is None:
            cur = await conn.execute(_SEND, params)
            return Sent(delivered=await cur.fetchone() is not None)
        step_params = {
            **params,
            "wf": caller.workflow_id,
            "step": caller.step_id,
            "exec": caller.executor_id,
        }
        try:
            async with conn.transaction():
                cur = await conn.execute(_SEND_STEP, step_params)
                row = await cur.fetchone()
                if row is None:
                    raise _NotRecorded
                cur = await conn.execute(_SEND, params)
                delivered = await cur.fetchone() is not None
                return Sent(delivered, rows.step(row))
        except _NotRecorded:
            pass
        recorded = await resolve_unrecorded(
            conn,
            namespace,
            caller.workflow_id,
            caller.step_id,
            StepKind.SEND,
            topic,
            caller.executor_id,
        )
        return Sent(delivered=False, step=recorded)


@dataclass(frozen=True)
class Received:
    step: StepRecord
    # True when the step was recorded before (by a replay or a concurrent call): this
    # call consumed nothing.
    already_recorded: bool


async def receive(
    pool: AsyncConnectionPool,
    namespace: str,
    workflow_id: str,
    step_id: int,
    topic: str,
    deadline: datetime,
    *,
    give_up: bool,
    executor_id: str = "",
) -> Received | None:
    """Consume the oldest message of `topic` for the workflow as its RECV step.

    None when there is no message and the caller should wait on. With `give_up` (the
    deadline passed) and no message, the step is recorded as timed out instead. When the
    step was recorded meanwhile by another call it is returned; when the workflow may no
    longer record it, raises why (WorkflowNotPending, NotOwner, WorkflowNotFound).
    """
    params = {
        "ns": namespace,
        "wf": workflow_id,
        "dest": workflow_id,
        "step": step_id,
        "topic": topic,
        "exec": executor_id,
    }
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                cur = await conn.execute(_NEXT, params)
                found = await cur.fetchone()
                if found is None and not give_up:
                    raise _NoMessage
                message_id, encoding, data = found if found is not None else (None, "", b"")
                step = await waits.record_outcome(
                    conn,
                    namespace,
                    workflow_id,
                    step_id,
                    StepKind.RECV,
                    topic,
                    Payload(encoding, bytes(data)) if found is not None else waits.JSON_NULL,
                    deadline,
                    timed_out=found is None,
                    executor_id=executor_id,
                )
                if step is None:
                    # Roll back: the message must stay for the Recv that records the step.
                    raise _NotRecorded
                if message_id is not None:
                    await conn.execute(_CONSUME, {**params, "id": message_id})
                await conn.execute(_NOTIFY_RECEIVED, params)
                return Received(step, already_recorded=False)
        except _NoMessage:
            # Outside the transaction (nothing is locked): the caller waits on unless its
            # step got recorded by a concurrent call or it may no longer record it.
            if not await waits.settled_on(conn, namespace, workflow_id, step_id, executor_id):
                return None
        except _NotRecorded:
            pass
        recorded = await resolve_unrecorded(
            conn, namespace, workflow_id, step_id, StepKind.RECV, topic, executor_id
        )
        return Received(recorded, already_recorded=True)
