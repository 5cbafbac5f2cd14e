"""Wake-ups for waiting readers: an in-memory hub fed by this process and by LISTEN/NOTIFY.

A waiter subscribes to topics, reads the database, and sleeps until a topic is published
or its deadline passes; then it reads again, unless the publish handed it the new value of
an event (a SetEvent on this coordinator, or a NOTIFY small enough to carry it). Nothing
polls: a write on this coordinator publishes directly after commit, and a write on any
other coordinator arrives through one LISTEN connection per process. If that connection
drops, notifications may have been missed, so every waiter is woken to re-read once it is
back. At shutdown the hub is closed: every wait, present or future, ends with ShuttingDown
(UNAVAILABLE) at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg

from coordinator.errors import ShuttingDown
from coordinator.store import db
from coordinator.store.changes import CHANGES_CHANNEL
from coordinator.store.events import EVENT_CHANNEL
from coordinator.store.messages import MESSAGE_CHANNEL
from coordinator.store.records import EventValue, Payload
from coordinator.store.workers import WORK_CHANNEL
from coordinator.store.workflows import WORKFLOW_CHANNEL

log = logging.getLogger(__name__)

# ("event", namespace, workflow_id, key) or ("workflow", namespace, workflow_id)
Topic = tuple[str, ...]


def event_topic(namespace: str, workflow_id: str, key: str) -> Topic:
    return ("event", namespace, workflow_id, key)


def workflow_topic(namespace: str, workflow_id: str) -> Topic:
    return ("workflow", namespace, workflow_id)


def message_topic(namespace: str, workflow_id: str, topic: str) -> Topic:
    """Published when a message to the workflow on `topic` is sent (or consumed)."""
    return ("message", namespace, workflow_id, topic)


def changes_topic(namespace: str) -> Topic:
    """Published when a status change of a workflow in the namespace commits (WatchWorkflows
    reads the change log, durable.workflow_changes, after it)."""
    return ("changes", namespace)


def work_topic(namespace: str) -> Topic:
    """Published when workflows become claimable in a namespace (resumed, forked...)."""
    return ("work", namespace)


class Waiter:
    """One reader's wake-up flag. Arm it before reading, so no publish can slip between."""

    def __init__(self, *, closed: bool = False) -> None:
        self._woken = False
        # The future a wait() sleeps on, while one does. Resolved directly by a wake-up (or
        # the timeout): no task in between, so a woken reader runs in the loop's next pass.
        self._sleeping: asyncio.Future[None] | None = None
        self._closed = closed
        # The newest event version this reader has seen; older publishes don't wake it.
        self.seen_version = 0
        # The newest event value handed over by a publish and not taken yet. What only a
        # read can tell: a wake-up without a version (a finish, a lost LISTEN connection...)
        # and the newest version announced without its value (too large for its NOTIFY).
        self._value: EventValue | None = None
        self._must_read = False
        self._version_without_value = 0

    def arm(self) -> None:
        self._woken = False

    def _set(self) -> None:
        self._woken = True
        if self._sleeping is not None and not self._sleeping.done():
            self._sleeping.set_result(None)

    def wake(self, version: int | None = None, value: EventValue | None = None) -> None:
        if version is not None and version <= self.seen_version:
            return
        if version is None:
            self._must_read = True
        elif value is None:
            self._version_without_value = max(self._version_without_value, version)
        elif self._value is None or version > self._value.version:
            self._value = value
        self._set()

    def take_value(self) -> EventValue | None:
        """The newest value handed over since the last take, or None when the reader must
        read: nothing was handed over, or a wake-up since says more than the value does.
        Take it right after arm(): whatever is published later wakes the next wait."""
        value, self._value = self._value, None
        must_read = self._must_read or (
            value is not None and self._version_without_value > value.version
        )
        self._must_read, self._version_without_value = False, 0
        return None if must_read else value

    def close(self) -> None:
        """End this waiter's current and every later wait with ShuttingDown."""
        self._closed = True
        self._set()

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; True if woken. Returns at once if
        woken since the last arm(): a caller that waits in a loop arms before each wait.

        Raises ShuttingDown once the hub is closed (also if it closes during the wait).
        """
        if self._closed:
            raise ShuttingDown()
        if not self._woken:
            loop = asyncio.get_running_loop()
            self._sleeping = loop.create_future()
            timer = loop.call_later(max(0.0, timeout), _end_sleep, self._sleeping)
            try:
                await self._sleeping
            finally:
                timer.cancel()
                self._sleeping = None
        if self._closed:
            raise ShuttingDown()
        return self._woken


def _end_sleep(sleeping: asyncio.Future[None]) -> None:
    if not sleeping.done():
        sleeping.set_result(None)


class Hub:
    """Fans published topics out to the waiters of this process."""

    def __init__(self) -> None:
        self._waiters: dict[Topic, set[Waiter]] = {}
        self._closed = False
        self._closing = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, *topics: Topic) -> Iterator[Waiter]:
        """A waiter for `topics`, removed when the block exits (also on cancellation)."""
        waiter = Waiter(closed=self._closed)
        for topic in topics:
            self._waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            for topic in topics:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[topic]

    def publish(
        self, topic: Topic, version: int | None = None, value: EventValue | None = None
    ) -> None:
        """Wake the topic's waiters; an event's publish gives its version, and its value
        when known, which spares each waiter a read."""
        for waiter in self._waiters.get(topic, ()):
            waiter.wake(version, value)

    def has_waiters(self, topic: Topic) -> bool:
        return topic in self._waiters

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def close(self) -> None:
        """Shutting down: wake every waiter, and make every wait from now on raise
        ShuttingDown, so open GetEvent and AwaitWorkflow calls end at once instead of
        holding the shutdown until its grace runs out."""
        self._closed = True
        self._closing.set()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.close()

    async def wait_closed(self) -> None:
        """Return once the hub is closed: for what only the shutdown ends."""
        await self._closing.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiter_count(self) -> int:
        return sum(len(w) for w in self._waiters.values())


class Listener:
    """Holds one LISTEN connection and feeds what it hears into the hub; reconnects.

    The connection goes through the same guard as the pool's (coordinator/store/db.py), so
    after a failover it follows a multi-host URL to the new primary, and never settles on a
    standby or a diverged old primary. Any failure (a lost connection, a read-only server,
    a refused one) is retried with a backoff doubling up to `max_retry_seconds`.
    """

    def __init__(
        self,
        url: str,
        hub: Hub,
        *,
        retry_seconds: float = 0.2,
        max_retry_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._hub = hub
        self._retry_seconds = retry_seconds
        self._max_retry_seconds = max_retry_seconds
        self.connected = asyncio.Event()
        # Why the connection is down, for the health status; None while it is up.
        self.problem: str | None = "not connected yet"

    async def run(self) -> None:
        """Listen until cancelled. `connected` is set only while LISTEN is in place."""
        try:
            await self._listen()
        finally:
            self.connected.clear()

    async def _listen(self) -> None:
        pause = self._retry_seconds
        while True:
            try:
                async with await db.connect(self._url) as conn:
                    await conn.execute(f"LISTEN {EVENT_CHANNEL}")
                    await conn.execute(f"LISTEN {WORKFLOW_CHANNEL}")
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    await conn.execute(f"LISTEN {MESSAGE_CHANNEL}")
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.connected.set()
                    self.problem = None
                    pause = self._retry_seconds
                    # Anything published while we were not listening was missed: every
                    # waiter reads again once (a value set just before a crash is found).
                    self._hub.wake_all()
                    async for notify in conn.notifies():
                        self._dispatch(notify.channel, notify.payload)
                raise psycopg.OperationalError("the LISTEN connection ended")
            except Exception as exc:
                # Not only OperationalError: a standby answers LISTEN with 25006 (read-only).
                why = db.unavailable_reason(exc) or f"{type(exc).__name__}: {exc}"
                if self.connected.is_set():
                    log.warning("LISTEN connection lost (%s); reconnecting", why)
                elif why != self.problem:
                    log.warning("LISTEN connection not established (%s); retrying", why)
                self.problem = why
                self.connected.clear()
                await asyncio.sleep(pause)
                pause = min(pause * 2, self._max_retry_seconds)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == CHANGES_CHANNEL:
            self._hub.publish(changes_topic(payload))  # the payload is the namespace
            return
        try:
            note = json.loads(payload)
            if channel == WORKFLOW_CHANNEL:
                self._hub.publish(workflow_topic(note["n"], note["w"]))
            elif channel == EVENT_CHANNEL:
                topic = event_topic(note["n"], note["w"], note["k"])
                if self._hub.has_waiters(topic):  # most events have no reader here
                    version = int(note["v"])
                    self._hub.publish(topic, version, _value(version, note))
            elif channel == WORK_CHANNEL:
                self._hub.publish(work_topic(note["n"]))
            elif channel == MESSAGE_CHANNEL:
                self._hub.publish(message_topic(note["n"], note["w"], note["t"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed notification on %s: %.200r", channel, payload)


def _value(version: int, note: dict[str, str]) -> EventValue | None:
    """The value a durable_event note carries (events.notify), if it carries one."""
    if "d" not in note:
        return None
    set_at = datetime.fromisoformat(note["t"]).replace(tzinfo=timezone.utc)
    return EventValue(version, Payload(note["e"], base64.b64decode(note["d"])), set_at)
