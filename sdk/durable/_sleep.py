"""Durable sleep: the wake-up time is recorded, so a workflow resumed after its worker died
sleeps only for what is left."""

from __future__ import annotations

import time

from durable import _drive
from durable._core import ops
from durable._core.context import checkpointing
from durable._core.durations import Seconds
from durable._core.durations import seconds as as_seconds

# The longest sleep the coordinator records (a year).
MAX_SLEEP_SECONDS = ops.MAX_SLEEP_SECONDS


def sleep(seconds: Seconds) -> None:
    """Sleep `seconds`. In a workflow the sleep is checkpointed as a step: its wake-up time
    is recorded by the first call, and a resumed workflow sleeps only until then (not at
    all once it passed). Outside a workflow, or inside a step, this is `time.sleep`.
    """
    seconds = ops.check_sleep_seconds(as_seconds(seconds))
    context = checkpointing("sleep", is_async=False)
    if context is None:
        time.sleep(seconds)
        return
    _drive.run(ops.sleep(context, seconds), context.client)
