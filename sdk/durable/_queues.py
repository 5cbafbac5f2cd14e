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

Partitions (e.g. one per tenant) keep a busy tenant from starving the others:

    reports = durable.Queue("reports", concurrency=2, limits_per_partition=True)
    with durable.set_enqueue_options(partition_key="tenant-7"):
        reports.enqueue(build_report, "2026-Q1")
    durable.get_queue("reports").partitions     # what waits and runs, per partition

Workers take every partition's next workflow before any partition's second (fair
dispatch: within a partition, priority then age). With `limits_per_partition=True`,
`concurrency` and `rate_limit` hold for each partition instead of the whole queue;
`worker_concurrency` always holds per worker. A partition key on a queue without per-
partition limits is accepted: it only makes dispatch fair. See docs/queues.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
# GetQueue returns at most this many partitions (and 100 when asked for 0).
MAX_PARTITIONS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    `limits_per_partition=True`: `concurrency` and `rate_limit` hold for each partition
    (see `set_enqueue_options(partition_key=...)`) instead of the whole queue.
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
        limits_per_partition: bool = False,
    ) -> None:
        if not 1 <= len(name) <= MAX_NAME_CHARS:
            raise ValueError(f"a queue name must be 1-{MAX_NAME_CHARS} characters")
        if not isinstance(limits_per_partition, bool):
            raise TypeError(
                f"limits_per_partition must be True or False, not {limits_per_partition!r}"
            )
        self.name = name
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.rate_limit = rate_limit
        self.limits_per_partition = limits_per_partition
        # Checked now, not at the first configure(): a bad limit is a bug at its source.
        self._config = self._wire_config()

    def _wire_config(self) -> pb.QueueConfig:
        config = pb.QueueConfig(
            name=self.name,
            concurrency=_limit(self.concurrency, "concurrency"),
            worker_concurrency=_limit(self.worker_concurrency, "worker_concurrency"),
            limits_per_partition=self.limits_per_partition,
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
            f" worker_concurrency={self.worker_concurrency}, rate_limit={self.rate_limit},"
            f" limits_per_partition={self.limits_per_partition})"
        )

    def configure(self, *, client: Client | None = None) -> None:
        """Store this queue's limits in the coordinator, replacing earlier ones. A Worker
        serving the queue does this when it starts."""
        (client or default_client()).configure_queue(self._config)

    def pause(self, *, client: Client | None = None) -> None:
        """Pause this queue, as `durable.pause_queue`: workers are handed none of its
        workflows until `resume()`; those running go on. Survives coordinator restarts."""
        (client or default_client()).set_queue_paused(self.name, True)

    def resume(self, *, client: Client | None = None) -> None:
        """Resume this queue, as `durable.resume_queue`."""
        (client or default_client()).set_queue_paused(self.name, False)

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
    *,
    priority: int | None = None,
    deduplication_id: str | None = None,
    partition_key: str | None = None,
) -> Iterator[None]:
    """Enqueue the workflows `Queue.enqueue` (and `durable.aio.enqueue`) enqueue inside this
    block with this `priority` (lower runs first; default 0), `deduplication_id` (at most
    one ENQUEUED or PENDING workflow of a queue holds it) and `partition_key` (1-256
    characters, e.g. a tenant: workers serve a queue's partitions in turn, and a queue with
    `limits_per_partition` applies its limits to each)."""
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or priority.bit_length() > 31
    ):
        raise ValueError(f"priority must be a 32-bit whole number, not {priority!r}")
    if deduplication_id is not None and not 1 <= len(deduplication_id) <= MAX_NAME_CHARS:
        raise ValueError(f"a deduplication_id must be 1-{MAX_NAME_CHARS} characters")
    if partition_key is not None and (
        not isinstance(partition_key, str)
        or not 1 <= len(partition_key) <= MAX_NAME_CHARS
        or _CONTROL.search(partition_key)
    ):
        raise ValueError(
            f"a partition_key must be 1-{MAX_NAME_CHARS} characters without control"
            f" characters, not {partition_key!r}"
        )
    token = next_enqueue_options.set(
        EnqueueOptions(priority or 0, deduplication_id or "", partition_key or "")
    )
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


# --- what waits and runs on a queue ---------------------------------------------------------


@dataclass(frozen=True)
class QueueLoad:
    """What waits and runs on a queue, or on one of its partitions.

    `partition_key` is "" for the queue as a whole, and for the workflows enqueued without
    a partition key. `enqueued` counts the ENQUEUED workflows (due or not), `delayed` those
    of them not due yet, `running` the PENDING ones (claimed by a worker)."""

    partition_key: str
    enqueued: int
    delayed: int
    running: int


@dataclass(frozen=True)
class QueueInfo:
    """A queue's limits as stored (None: no limit; all None for a queue never
    configured), its total load, and the load of its busiest partitions (most enqueued
    first); `partitions_truncated` when more partitions exist than were returned;
    `paused` while the queue is paused (`durable.pause_queue`): nothing new is handed out."""

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    rate_limit: tuple[int, float] | None
    limits_per_partition: bool
    total: QueueLoad
    partitions: list[QueueLoad]
    partitions_truncated: bool
    paused: bool = False


def _load(message: pb.QueueLoad) -> QueueLoad:
    return QueueLoad(message.partition_key, message.enqueued, message.delayed, message.running)


def queue_info(reply: pb.GetQueueResponse) -> QueueInfo:
    config = reply.queue
    rate = (
        (config.rate_limit, config.rate_period.ToNanoseconds() / 1e9) if config.rate_limit else None
    )
    return QueueInfo(
        name=config.name,
        concurrency=config.concurrency or None,
        worker_concurrency=config.worker_concurrency or None,
        rate_limit=rate,
        limits_per_partition=config.limits_per_partition,
        total=_load(reply.total),
        partitions=[_load(p) for p in reply.partitions],
        partitions_truncated=reply.partitions_truncated,
        paused=config.paused,
    )


def queue_name_of(queue: Queue | str) -> str:
    if isinstance(queue, Queue):
        return queue.name
    if not isinstance(queue, str):
        raise TypeError(f"queue must be a durable.Queue or its name, not {queue!r}")
    return queue


def check_max_partitions(max_partitions: int | None) -> int:
    """The GetQueue max_partitions of `max_partitions` (None: the coordinator's 100)."""
    if max_partitions is None:
        return 0
    if (
        isinstance(max_partitions, bool)
        or not isinstance(max_partitions, int)
        or not 1 <= max_partitions <= MAX_PARTITIONS
    ):
        raise ValueError(f"max_partitions must be 1-{MAX_PARTITIONS}, not {max_partitions!r}")
    return max_partitions


def get_queue(
    queue: Queue | str, *, max_partitions: int | None = None, client: Client | None = None
) -> QueueInfo:
    """Queue `queue`'s limits and what waits and runs on it, in total and per partition
    (the `max_partitions` busiest, 100 by default). A queue nobody configured or used is
    no error: its limits are None and its counts zero."""
    limit = check_max_partitions(max_partitions)
    reply = (client or default_client()).get_queue(queue_name_of(queue), limit)
    return queue_info(reply)
