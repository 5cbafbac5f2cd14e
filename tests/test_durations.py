"""Every duration the SDK takes is a number of seconds or a datetime.timedelta."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import durable
import durable.aio
from durable._core.durations import seconds
from tests.support import Coordinator, new_id


def test_a_timedelta_is_its_seconds_and_anything_else_is_refused() -> None:
    assert seconds(timedelta(minutes=2, milliseconds=500)) == 120.5
    assert seconds(3) == 3.0
    for wrong in (True, "5", None):
        with pytest.raises(TypeError, match="timedelta"):
            seconds(wrong)  # type: ignore[arg-type]


@durable.workflow(name="tests.durations.waits")
def waits() -> list[object]:
    durable.sleep(timedelta(milliseconds=20))
    return [durable.recv("nothing", timeout=timedelta(milliseconds=50))]


@durable.workflow(name="tests.durations.waits_async")
async def waits_async() -> list[object]:
    await durable.aio.sleep(timedelta(milliseconds=20))
    return [await durable.aio.recv("nothing", timeout=timedelta(milliseconds=50))]


def test_workflow_waits_and_results_take_timedeltas(coordinator: Coordinator, sdk: None) -> None:
    with durable.set_workflow_id(new_id()), durable.set_workflow_timeout(timedelta(hours=1)):
        handle = durable.start_workflow(waits)
    assert handle.result(timeout=timedelta(seconds=10)) == [None]
    missing = durable.get_event(new_id(), "k", timeout=timedelta(milliseconds=10))
    assert missing is None

    async def main() -> list[object]:
        durable.aio.configure(coordinator.address)
        handle = await durable.aio.start_workflow(waits_async)
        assert await durable.aio.get_event(new_id(), "k", timedelta(milliseconds=10)) is None
        result: list[object] = await handle.result(timeout=timedelta(seconds=10))
        await durable.aio.close()  # the loop's default client; a later call opens another
        assert await durable.aio.get_event(new_id(), "k", timedelta(milliseconds=10)) is None
        await durable.aio.close()
        return result

    assert asyncio.run(main()) == [None]
    with pytest.raises(TypeError):
        durable.Worker([waits], lease_seconds="10")  # type: ignore[arg-type]
