"""Messages: anyone sends a JSON value to a workflow by ID; the workflow receives it.

A message waits for its workflow (which need not have started yet) until a `recv` on its
topic consumes it. Each message is received exactly once, and both ends are checkpointed:
a resumed workflow does not send again, and its replayed `recv` returns the message it
received the first time.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from durable import _context, _payloads
from durable._client import Client, default_client, duration
from durable.errors import NotInWorkflowError
from durable.v1 import coordinator_pb2 as pb

DEFAULT_RECV_TIMEOUT_SECONDS = 60.0


def _topic(topic: str | None) -> str:
    if topic is not None and not isinstance(topic, str):
        raise TypeError(f"topic must be a str or None, not {type(topic).__name__}")
    return topic or ""


def send(
    destination_id: str,
    message: Any,
    topic: str | None = None,
    *,
    idempotency_key: str | None = None,
    client: Client | None = None,
) -> None:
    """Send `message` (JSON-serializable) to workflow `destination_id` on `topic`.

    The destination need not exist yet: the message waits for it. From a workflow, the
    send is checkpointed as a step, so a resumed workflow does not send it again. Outside
    a workflow, a send with an `idempotency_key` already used for this destination
    delivers nothing; without one, a key is generated for this call, so the SDK's own
    retries (the coordinator was briefly away) never deliver twice.
    """
    request = pb.SendRequest(
        destination_workflow_id=destination_id,
        topic=_topic(topic),
        message=_payloads.encode(message),
        idempotency_key=idempotency_key or "",
    )
    context = _context.current()
    if context is None or context.in_step:
        if not request.idempotency_key:
            request.idempotency_key = str(uuid.uuid4())
        (client or (context.client if context else default_client())).send(request)
        return
    step_id, recorded = context.next_step(pb.STEP_KIND_SEND, request.topic)
    if recorded is not None:
        return
    request.caller.CopyFrom(
        pb.StepRef(
            workflow_id=context.workflow_id, step_id=step_id, executor_id=context.executor_id
        )
    )
    reply = context.client.send(request)
    if reply.already_sent:
        # The key was used before, or the step was recorded before this run got to it (by
        # another run): make sure the run is still ours before going on.
        context.check_owner()


def recv(topic: str | None = None, timeout: float = DEFAULT_RECV_TIMEOUT_SECONDS) -> Any:
    """Receive the oldest message sent to the running workflow on `topic`, waiting up to
    `timeout` seconds for one; None if none came in time.

    Checkpointed: the message is consumed once, and a resumed workflow gets the same
    message (or None) back at once. The timeout counts from the first call, so a workflow
    resumed after its worker died waits only for what is left of it. Only in a workflow,
    outside its steps.
    """
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be a finite number of seconds >= 0, not {timeout!r}")
    context = _context.current()
    if context is None:
        raise NotInWorkflowError("recv can only be called from a workflow")
    if context.in_step:
        raise NotInWorkflowError("recv cannot be called inside a step; call it from the workflow")
    name = _topic(topic)
    step_id, recorded = context.next_step(pb.STEP_KIND_RECV, name)
    if recorded is None:
        reply = context.client.recv(
            pb.RecvRequest(
                workflow_id=context.workflow_id,
                step_id=step_id,
                topic=name,
                timeout=duration(timeout),
                executor_id=context.executor_id,
            )
        )
        if reply.already_recorded:
            context.check_owner()
        recorded = reply.step
    if recorded.timed_out:
        return None
    return _payloads.decode(recorded.output)
