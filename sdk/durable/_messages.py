"""Messages: anyone sends a JSON value to a workflow by ID; the workflow receives it.

A message waits for its workflow (which need not have started yet) until a `recv` on its
topic consumes it. Each message is received exactly once, and both ends are checkpointed:
a resumed workflow does not send again, and its replayed `recv` returns the message it
received the first time.
"""

from __future__ import annotations

from typing import Any

from durable import _drive
from durable._client import Client, default_client
from durable._core import ops
from durable._core.context import checkpointing, current, in_step
from durable._core.durations import Seconds, seconds
from durable.errors import NotInWorkflowError

DEFAULT_RECV_TIMEOUT_SECONDS = 60.0


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
    context = checkpointing("send", is_async=False)
    if context is not None:
        client = context.client
    else:
        # Inside a step: the workflow's own client, when it is one of this face.
        inside = current()
        own = inside.client if inside is not None and not inside.is_async else None
        client = client or own or default_client()
    _drive.run(ops.send(context, destination_id, message, topic, idempotency_key), client)


def recv(topic: str | None = None, timeout: Seconds = DEFAULT_RECV_TIMEOUT_SECONDS) -> Any:
    """Receive the oldest message sent to the running workflow on `topic`, waiting up to
    `timeout` seconds for one; None if none came in time.

    Checkpointed: the message is consumed once, and a resumed workflow gets the same
    message (or None) back at once. The timeout counts from the first call, so a workflow
    resumed after its worker died waits only for what is left of it. Only in a workflow,
    outside its steps.
    """
    timeout = ops.check_wait_seconds(seconds(timeout))
    context = checkpointing("recv", is_async=False)
    if context is None:
        raise recv_outside(in_step())
    return _drive.run(ops.recv(context, topic, timeout), context.client)


def recv_outside(inside_step: bool) -> NotInWorkflowError:
    if inside_step:
        return ops.not_in_step("recv")
    return NotInWorkflowError("recv can only be called from a workflow")
