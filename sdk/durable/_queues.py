"""Queues: enqueue workflows for the workers that serve a queue, within its limits.

    emails = durable.Queue("emails", concurrency=10, rate_limit=(50, 60.0))

    handle = emails.enqueue(send_email, "ada@example.com")    # from any process
    with durable.set_enqueue_options(priority=1, deduplication_id="user-42"):
        emails.enqueue(send_email, "grace@example.com")

    durable.Worker([send_email], queues=[emails]).run_forever()  # runs them

A queued workflow waits ENQUEUED until a worker serving its queue claims it. The
coordinator claims within the queue's limits, which `configure()` (and every Worker serving
the queue, at its start) stores: `concurrency` workflows of the queue running at once over
all workers, `worker_concurrency` per worker, and `rate_limit=(n, seconds)`: at most n
started per `seconds`. Lower `priority` runs first (default 0), then oldest first. At most
one ENQUEUED or PENDING workflow of a queue holds a `deduplication_id`: enqueuing another
raises QueueDeduplicatedError (`.existing_workflow_id`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, overload

from durable._client import Client, default_client
from durable._core.ops import duration
from durable._core.specs import EnqueueOptions, QueueStart, next_enqueue_options, spec_for
from durable._workflow import WorkflowHandle, begin
from durable.v1 import coordinator_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")

MAX_NAME_CHARS = 256
_MAX_LIMIT = 2**31 - 1
MAX_RATE_PERIOD_SECONDS = 24 * 3600.0


def _limit(value: int | None, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_LIMIT:
        raise ValueError(f"{what} must be a whole number from 1 (or None: no limit), not {value!r}")
    return value


class Queue:
    """A named queue of workflows, with optional limits (None: none).

    `concurrency`: the most of its workflows running at once over all workers;
    `worker_concurrency`: the most running at once on one worker; `rate_limit`:
    `(limit, period_seconds)`, the most started per period (a period of up to a day).
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        if not 1 <= len(name) <= MAX_NAME_CHARS:
            raise ValueError(f"a queue name must be 1-{MAX_NAME_CHARS} characters")
        self.name = name
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.rate_limit = rate_limit
        # Checked now, not at the first configure(): a bad limit is a bug at its source.
        self._config = self._wire_config()

    def _wire_config(self) -> pb.QueueConfig:
        config = pb.QueueConfig(
            name=self.name,
            concurrency=_limit(self.concurrency, "concurrency"),
            worker_concurrency=_limit(self.worker_concurrency, "worker_concurrency"),
        )
        if self.rate_limit is not None:
            limit, period = self.rate_limit
            config.rate_limit = _limit(limit, "rate_limit's limit")
            if not 0 < period <= MAX_RATE_PERIOD_SECONDS:
                raise ValueError(
                    f"rate_limit's period must be 0 < seconds <= {MAX_RATE_PERIOD_SECONDS:g},"
                    f" not {period!r}"
                )
            config.rate_period.CopyFrom(duration(period))
        return config

    def __repr__(self) -> str:
        return (
            f"Queue({self.name!r}, concurrency={self.concurrency},"
            f" worker_concurrency={self.worker_concurrency}, rate_limit={self.rate_limit})"
        )

    def configure(self, *, client: Client | None = None) -> None:
        """Store this queue's limits in the coordinator, replacing earlier ones. A Worker
        serving the queue does this when it starts."""
        (client or default_client()).configure_queue(self._config)

    @overload
    def enqueue(self, fn: str, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]: ...
    @overload
    def enqueue(
        self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...
    def enqueue(self, fn: Any, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue workflow `fn` with these arguments and return its handle at once.
        `fn` may be the workflow's name (a str): a worker serving the queue that registers
        the name runs it, and the arguments must be JSON values.

        The workflow ID comes from an enclosing `set_workflow_id` block (enqueuing an ID
        that exists returns that workflow) or is generated; priority and deduplication ID
        from `set_enqueue_options`. Inside a workflow, the enqueue is checkpointed as a
        step (the enqueued workflow is its child): a replay gets the same workflow back.
        Raises QueueDeduplicatedError when the deduplication ID is taken.
        """
        client, started = begin(spec_for(fn), args, kwargs, QueueStart.on(self.name))
        return WorkflowHandle(started.workflow.workflow_id, client)


@contextlib.contextmanager
def set_enqueue_options(
    *, priority: int | None = None, deduplication_id: str | None = None
) -> Iterator[None]:
    """Enqueue the workflows `Queue.enqueue` enqueues inside this block with this
    `priority` (lower runs first; default 0) and `deduplication_id` (at most one ENQUEUED
    or PENDING workflow of a queue holds it)."""
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or priority.bit_length() > 31
    ):
        raise ValueError(f"priority must be a 32-bit whole number, not {priority!r}")
    if deduplication_id is not None and not 1 <= len(deduplication_id) <= MAX_NAME_CHARS:
        raise ValueError(f"a deduplication_id must be 1-{MAX_NAME_CHARS} characters")
    token = next_enqueue_options.set(EnqueueOptions(priority or 0, deduplication_id or ""))
    try:
        yield
    finally:
        next_enqueue_options.reset(token)


def queue_names(queues: Any) -> list[str]:
    """The names of Worker(queues=...), which must be Queue objects with distinct names."""
    names: list[str] = []
    for queue in queues:
        if not isinstance(queue, Queue):
            raise TypeError(f"queues must be durable.Queue objects, not {queue!r}")
        if queue.name in names:
            raise ValueError(f"two queues are named {queue.name!r}")
        names.append(queue.name)
    return names
