"""Events: a workflow publishes key -> value; anyone reads or watches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from durable import _context, _payloads
from durable._client import Client, default_client
from durable.errors import NotInWorkflowError
from durable.v1 import coordinator_pb2 as pb

DEFAULT_TIMEOUT_SECONDS = 60.0


def set_event(key: str, value: Any) -> None:
    """Publish `key` = `value` from the running workflow (last write wins).

    Checkpointed like a step: a resumed workflow does not set an older value again.
    """
    context = _context.current()
    if context is None:
        raise NotInWorkflowError("set_event can only be called from a workflow")
    if context.in_step:
        raise NotInWorkflowError(
            "set_event cannot be called inside a step; call it from the workflow"
        )
    step_id, recorded = context.next_step(pb.STEP_KIND_SET_EVENT, key)
    if recorded is not None:
        return
    reply = context.client.set_event(
        pb.SetEventRequest(
            workflow_id=context.workflow_id,
            step_id=step_id,
            key=key,
            value=_payloads.encode(value),
            executor_id=context.executor_id,
        )
    )
    if reply.already_recorded:
        context.check_owner()


def get_event(
    workflow_id: str,
    key: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
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
    context = _context.current()
    caller = None
    if context is not None and not context.in_step:
        step_id, recorded = context.next_step(pb.STEP_KIND_GET_EVENT, key)
        if recorded is not None:
            return None if recorded.timed_out else _payloads.decode(recorded.output)
        client = context.client
        caller = pb.StepRef(
            workflow_id=context.workflow_id, step_id=step_id, executor_id=context.executor_id
        )
    stream = (client or default_client()).get_event(
        workflow_id, key, timeout, follow=False, caller=caller
    )
    for message in stream:
        if message.HasField("event"):
            return _payloads.decode(message.event.value)
    return None


def watch_event(
    workflow_id: str,
    key: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    *,
    client: Client | None = None,
) -> Iterator[Any]:
    """Yield the current value of event `key` and every later one, in order.

    Ends when the workflow finishes (after its last value) or `timeout` seconds pass. If the
    coordinator restarts meanwhile, the watch reconnects (see `RetryPolicy`) and goes on
    after the last value it yielded: none is lost or repeated.
    """
    for message in (client or default_client()).get_event(workflow_id, key, timeout, follow=True):
        if message.HasField("event"):
            yield _payloads.decode(message.event.value)
