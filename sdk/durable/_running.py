"""Which workflows have a run in this process. Two runs of one workflow here would share its
executor ID, so fencing could not stop the older one: the newer waits for it instead. One
registry for both faces: a thread of the sync face and a task of the async face may each
start the same workflow."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

_running_here: set[str] = set()
_running_changed = threading.Condition()


def running_here(workflow_id: str) -> bool:
    """Whether a run of the workflow is going on in this process."""
    with _running_changed:
        return workflow_id in _running_here


def _claim(workflow_id: str) -> bool:
    """Hold the workflow's one run here, waiting for another to end first; returns whether
    it waited."""
    waited = False
    with _running_changed:
        while workflow_id in _running_here:
            waited = True
            _running_changed.wait()
        _running_here.add(workflow_id)
    return waited


def _release(workflow_id: str) -> None:
    with _running_changed:
        _running_here.discard(workflow_id)
        _running_changed.notify_all()


@contextlib.contextmanager
def only_run_here(workflow_id: str) -> Iterator[bool]:
    """Hold the workflow's one run in this process, waiting for another to end first.

    Yields whether it waited: the history fetched before is stale then.
    """
    waited = _claim(workflow_id)
    try:
        yield waited
    finally:
        _release(workflow_id)


@contextlib.asynccontextmanager
async def only_run_here_async(workflow_id: str) -> AsyncIterator[bool]:
    """As `only_run_here`, for a task: the rare wait for another run happens in a thread,
    so the event loop goes on meanwhile (the other run may be a task of this same loop)."""
    with _running_changed:
        free = workflow_id not in _running_here
        if free:
            _running_here.add(workflow_id)
    waited = False
    if not free:
        claim = asyncio.ensure_future(asyncio.to_thread(_claim, workflow_id))
        try:
            waited = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # The thread still claims it in the end: give it back then.
            claim.add_done_callback(lambda _: _release(workflow_id))
            raise
    try:
        yield waited
    finally:
        _release(workflow_id)
