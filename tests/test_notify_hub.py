"""Unit tests of the in-memory wake-up hub (no database, no network)."""

from __future__ import annotations

import asyncio

from coordinator.notify import Hub, event_topic, workflow_topic


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
