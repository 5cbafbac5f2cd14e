"""Unit tests of the in-memory wake-up hub (no database, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone

import pytest

from coordinator.errors import ShuttingDown
from coordinator.notify import Hub, Listener, event_topic, workflow_topic
from coordinator.store.events import EVENT_CHANNEL
from coordinator.store.records import EventValue, Payload


def test_publish_wakes_only_subscribers_of_that_topic() -> None:
    async def scenario() -> tuple[bool, bool]:
        hub = Hub()
        with (
            hub.subscribe(event_topic("ns", "w", "a")) as a,
            hub.subscribe(event_topic("ns", "w", "b")) as b,
        ):
            a.arm()
            b.arm()
            hub.publish(event_topic("ns", "w", "a"), 1)
            return await a.wait(1), await b.wait(0.01)

    assert asyncio.run(scenario()) == (True, False)


def test_versions_already_seen_do_not_wake() -> None:
    async def scenario() -> tuple[bool, bool]:
        hub = Hub()
        with hub.subscribe(event_topic("ns", "w", "k")) as waiter:
            waiter.seen_version = 3
            waiter.arm()
            hub.publish(event_topic("ns", "w", "k"), 3)  # the NOTIFY echo of a value already read
            stale = await waiter.wait(0.01)
            hub.publish(event_topic("ns", "w", "k"), 4)
            return stale, await waiter.wait(1)

    assert asyncio.run(scenario()) == (False, True)


def test_publish_between_arm_and_wait_is_not_lost() -> None:
    async def scenario() -> bool:
        hub = Hub()
        with hub.subscribe(workflow_topic("ns", "w")) as waiter:
            waiter.arm()
            hub.publish(workflow_topic("ns", "w"))  # lands while the reader queries the database
            return await waiter.wait(1)

    assert asyncio.run(scenario())


def test_cancelled_waiter_is_removed() -> None:
    async def scenario() -> int:
        hub = Hub()

        subscribed = asyncio.Event()

        async def wait_forever() -> None:
            with hub.subscribe(event_topic("ns", "w", "k"), workflow_topic("ns", "w")) as waiter:
                waiter.arm()
                subscribed.set()
                await waiter.wait(3600)

        task = asyncio.create_task(wait_forever())
        await asyncio.wait_for(subscribed.wait(), 5)
        assert hub.waiter_count == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return hub.waiter_count

    assert asyncio.run(scenario()) == 0


def test_wake_all_reaches_every_waiter() -> None:
    async def scenario() -> list[bool]:
        hub = Hub()
        with (
            hub.subscribe(event_topic("ns", "w", "a")) as a,
            hub.subscribe(workflow_topic("ns", "x")) as b,
        ):
            a.arm()
            b.arm()
            hub.wake_all()
            return [await a.wait(1), await b.wait(1)]

    assert asyncio.run(scenario()) == [True, True]


def test_closing_the_hub_ends_a_wait_in_progress_and_every_later_one() -> None:
    async def scenario() -> None:
        hub = Hub()
        with hub.subscribe(workflow_topic("ns", "w")) as waiter:
            waiter.arm()
            waiting = asyncio.create_task(waiter.wait(60))
            await asyncio.sleep(0)  # the wait is asleep now
            hub.close()
            with pytest.raises(ShuttingDown):
                await asyncio.wait_for(waiting, 1)
            with pytest.raises(ShuttingDown):
                await waiter.wait(60)
        with pytest.raises(ShuttingDown), hub.subscribe(workflow_topic("ns", "x")) as late:
            await late.wait(60)

    asyncio.run(scenario())


def test_a_cancelled_wait_can_be_followed_by_another() -> None:
    async def scenario() -> bool:
        hub = Hub()
        with hub.subscribe(workflow_topic("ns", "w")) as waiter:
            waiter.arm()
            waiting = asyncio.create_task(waiter.wait(60))
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            again = asyncio.create_task(waiter.wait(60))
            await asyncio.sleep(0)
            hub.publish(workflow_topic("ns", "w"))
            return await asyncio.wait_for(again, 1)

    assert asyncio.run(scenario())


def _value(version: int) -> EventValue:
    return EventValue(version, Payload("json", str(version).encode()), datetime.now(timezone.utc))


def test_a_published_value_is_handed_to_the_waiter_until_a_wake_up_says_more() -> None:
    hub = Hub()
    topic = event_topic("ns", "w", "k")
    with hub.subscribe(topic, workflow_topic("ns", "w")) as waiter:
        assert waiter.take_value() is None  # nothing handed over yet: read
        hub.publish(topic, 2, _value(2))
        hub.publish(topic, 1, _value(1))  # an older value does not replace a newer one
        hub.publish(topic, 2)  # the same version without its value (a NOTIFY echo): no news
        taken = waiter.take_value()
        assert taken is not None and taken.version == 2
        assert waiter.take_value() is None  # taken once

        hub.publish(topic, 3, _value(3))
        hub.publish(topic, 4)  # a newer version came without its value: only a read has it
        assert waiter.take_value() is None

        hub.publish(topic, 5, _value(5))
        hub.publish(workflow_topic("ns", "w"))  # e.g. the workflow finished: read
        assert waiter.take_value() is None

        waiter.seen_version = 6
        hub.publish(topic, 6, _value(6))  # already delivered: neither wakes nor is handed
        assert waiter.take_value() is None


def test_a_notify_hands_over_the_value_it_carries() -> None:
    async def scenario() -> None:
        hub = Hub()
        listener = Listener("postgresql://unused", hub)
        with hub.subscribe(event_topic("ns", "w", "k")) as waiter:
            # As events.notify builds it: the data in base64 with Postgres' line breaks.
            data = json.dumps("x" * 100).encode()
            note: dict[str, object] = {
                "n": "ns",
                "w": "w",
                "k": "k",
                "v": 7,
                "e": "json",
                "d": base64.encodebytes(data).decode(),
                "t": "2026-11-25T15:42:54.000120",
            }
            listener._dispatch(EVENT_CHANNEL, json.dumps(note))
            assert waiter.take_value() == EventValue(
                7, Payload("json", data), datetime(2026, 11, 25, 15, 42, 54, 120, timezone.utc)
            )
            # A value too large to carry: the version alone, and the reader reads.
            waiter.arm()
            without = {key: value for key, value in note.items() if key != "d"}
            listener._dispatch(EVENT_CHANNEL, json.dumps({**without, "v": 9}))
            assert await waiter.wait(1) and waiter.take_value() is None
            # Malformed data is ignored (logged), as any malformed note is.
            waiter.arm()
            listener._dispatch(EVENT_CHANNEL, json.dumps({**note, "v": 10, "d": "abc"}))
            assert not await waiter.wait(0.01)

    asyncio.run(scenario())
