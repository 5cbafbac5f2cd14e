"""Durable sleep: the wake-up time is recorded, so a workflow resumed after its worker died
sleeps only for what is left."""

from __future__ import annotations

import math
import time

from durable import _context
from durable._client import duration
from durable.v1 import coordinator_pb2 as pb

# The longest sleep the coordinator records (a year).
MAX_SLEEP_SECONDS = 365 * 24 * 3600.0


def sleep(seconds: float) -> None:
    """Sleep `seconds`. In a workflow the sleep is checkpointed as a step: its wake-up time
    is recorded by the first call, and a resumed workflow sleeps only until then (not at
    all once it passed). Outside a workflow, or inside a step, this is `time.sleep`.
    """
    if not (isinstance(seconds, int | float) and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a finite number, not {seconds!r}")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be 0 to {MAX_SLEEP_SECONDS:.0f}, not {seconds!r}")
    context = _context.current()
    if context is None or context.in_step:
        time.sleep(seconds)
        return
    step_id, recorded = context.next_step(pb.STEP_KIND_SLEEP, "sleep")
    if recorded is not None and recorded.deadline.ToNanoseconds() <= time.time_ns():
        return  # woke up already, by this machine's clock: no need to ask
    # The coordinator says what is left, by its clock: the one the wake-up time was fixed by.
    reply = context.client.sleep(
        pb.SleepRequest(
            workflow_id=context.workflow_id,
            step_id=step_id,
            duration=duration(seconds),
            executor_id=context.executor_id,
        )
    )
    if reply.already_recorded and recorded is None:
        context.check_owner()
    time.sleep(reply.remaining.ToNanoseconds() / 1e9)
