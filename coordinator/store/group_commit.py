"""Group commit: writes that arrive while earlier ones are being committed share the next
transaction.

A write is submitted and awaited. When fewer than `max_in_flight` batches are being
written, it goes at once, in a batch of its own (no timer: a lone request never waits).
Otherwise it queues, and when a batch finishes, everything queued meanwhile (up to
`max_batch`) goes together: one statement, one commit, one WAL flush for all of them. So
batches grow with the load by themselves, and each commit's fixed cost (a round trip, a
pool checkout, the statement's overhead in Python, the commit) is paid once per batch.

Two writes that touch the same row (the same `keys`) never share a batch, nor run in two
batches at once: within one set-based statement Postgres could not tell which of them came
first, and an upsert may not touch a row twice. The later one waits for the next batch.

A batch of one goes through `write_one`, the plain single-request path. A larger batch goes
through `write_batch`, which returns a result or an exception per request. If it raises
RunAlone, nothing was written (the statement failed as a whole, e.g. on one bad row), and
each request is written alone instead, so one bad request cannot fail the others. Any
other exception (the database is gone) is every request's answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


class RunAlone(Exception):
    """Raised by a batch write that wrote nothing: write each request on its own instead."""


def _settle(future: asyncio.Future[Res], result: Res | BaseException) -> None:
    if future.done():  # its caller went away (the RPC was cancelled)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class GroupCommit(Generic[Req, Res]):
    """Batches concurrent writes of one kind into shared transactions (see the module doc)."""

    def __init__(
        self,
        write_one: Callable[[Req], Awaitable[Res]],
        write_batch: Callable[[Sequence[Req]], Awaitable[Sequence[Res | Exception]]],
        *,
        keys: Callable[[Req], Iterable[Hashable]],
        max_batch: int,
        max_in_flight: int,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._write_one = write_one
        self._write_batch = write_batch
        self._keys = keys
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._observe = observe
        self._queue: deque[tuple[Req, asyncio.Future[Res]]] = deque()
        self._busy_keys: set[Hashable] = set()
        self._in_flight = 0
        # Strong references: the loop keeps only weak ones to its tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def submit(self, request: Req) -> Res:
        """Write `request` (alone or with others) and return its result or raise its error."""
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._start_batches()
        # A cancelled caller cancels its future; a batch not yet started skips it.
        return await future

    def _start_batches(self) -> None:
        while self._in_flight < self._max_in_flight and self._queue:
            batch = self._take()
            if not batch:
                return  # everything queued waits for a key held by a running batch
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Req, asyncio.Future[Res], list[Hashable]]]:
        """The next batch, in arrival order; what must wait stays queued in order."""
        batch: list[tuple[Req, asyncio.Future[Res], list[Hashable]]] = []
        left: deque[tuple[Req, asyncio.Future[Res]]] = deque()
        while self._queue and len(batch) < self._max_batch:
            request, future = self._queue.popleft()
            if future.done():
                continue  # cancelled while queued: never written
            keys = list(self._keys(request))
            if any(k in self._busy_keys for k in keys):
                left.append((request, future))
                continue
            self._busy_keys.update(keys)
            batch.append((request, future, keys))
        left.extend(self._queue)
        self._queue = left
        return batch

    async def _run(self, batch: list[tuple[Req, asyncio.Future[Res], list[Hashable]]]) -> None:
        futures = [future for _, future, _ in batch]
        cancelled = False
        try:
            if self._observe is not None:
                self._observe(len(batch))
            results = await self._write([request for request, _, _ in batch])
            for future, result in zip(futures, results, strict=True):
                _settle(future, result)
        except asyncio.CancelledError:
            # The loop is shutting down: leave no caller hanging.
            cancelled = True
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # a bug in a writer: its callers see it (INTERNAL, logged)
            for future in futures:
                _settle(future, exc)
        finally:
            for _, _, keys in batch:
                self._busy_keys.difference_update(keys)
            self._in_flight -= 1
            if not cancelled:
                self._start_batches()

    async def _write(self, requests: list[Req]) -> Sequence[Res | Exception]:
        if len(requests) == 1:
            return [await self._alone(requests[0])]
        try:
            return await self._write_batch(requests)
        except RunAlone:
            return [await self._alone(request) for request in requests]
        except Exception as exc:
            return [exc] * len(requests)

    async def _alone(self, request: Req) -> Res | Exception:
        try:
            return await self._write_one(request)
        except Exception as exc:
            return exc
