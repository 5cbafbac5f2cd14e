"""Events: a workflow publishes key -> value; anyone reads or watches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from durable import _drive, _payloads
from durable._client import Client, default_client
from durable._core import ops
from durable._core.context import checkpointing, current, face_mismatch, in_step
from durable._core.durations import Seconds, seconds
from durable.errors import NotInWorkflowError

DEFAULT_TIMEOUT_SECONDS = 60.0


def set_event(key: str, value: Any) -> None:
    """Publish `key` = `value` from the running workflow (last write wins).

    Checkpointed like a step: a resumed workflow does not set an older value again.
    """
    context = checkpointing("set_event", is_async=False)
    if context is None:
        raise set_event_outside(in_step())
    _drive.run(ops.set_event(context, key, value), context.client)


def set_event_outside(inside_step: bool) -> NotInWorkflowError:
    if inside_step:
        return ops.not_in_step("set_event")
    return NotInWorkflowError("set_event can only be called from a workflow")


def get_event(
    workflow_id: str,
    key: str,
    timeout: Seconds = DEFAULT_TIMEOUT_SECONDS,
    *,
    client: Client | None = None,
) -> Any:
    """The value of event `key` of a workflow, waiting up to `timeout` seconds for it.

    Returns None if the timeout passes first, or if the workflow finished without setting
    it. The workflow need not have started yet.

    From a workflow (outside its steps) the read is checkpointed as a step: a resumed
    workflow gets the value it read the first time (or None) back at once, and the
    timeout counts from the first call. It is recorded through the workflow's own client.
    """
    timeout = seconds(timeout)
    context = checkpointing("get_event", is_async=False)
    if context is not None:
        return _drive.run(ops.read_event(context, workflow_id, key, timeout), context.client)
    event = (client or default_client()).first_event(workflow_id, key, timeout)
    return None if event is None else _payloads.decode(event.value)


def watch_event(
    workflow_id: str,
    key: str,
    timeout: Seconds = DEFAULT_TIMEOUT_SECONDS,
    *,
    client: Client | None = None,
) -> Iterator[Any]:
    """Yield the current value of event `key` and every later one, in order.

    Ends when the workflow finishes (after its last value) or `timeout` seconds pass. If the
    coordinator restarts meanwhile, the watch reconnects (see `RetryPolicy`) and goes on
    after the last value it yielded: none is lost or repeated.
    """
    if (context := current()) is not None and context.is_async and not in_step():
        raise face_mismatch("watch_event", workflow_is_async=True)
    wait = seconds(timeout)
    for message in (client or default_client()).get_event(workflow_id, key, wait, follow=True):
        if message.HasField("event"):
            yield _payloads.decode(message.event.value)
