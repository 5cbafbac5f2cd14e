"""Patch markers: changing a workflow's code while runs of the old code are in flight.

    if durable.patched("fraud-check-v2"):
        new_branch()
    else:
        old_branch()

A run that reaches the `patched` call on the new code records a marker there and takes
the new branch, then and on every replay. A run recorded by the old code has another
operation at that position: `patched` returns False without consuming it, and the old
branch replays it. Once no run of the old code is left, `deprecate_patch` replaces
`patched` (the old branch goes), and later the call itself goes.
"""

from __future__ import annotations

from durable import _drive
from durable._core import ops
from durable._core.context import checkpointing, current, in_step
from durable.errors import NotInWorkflowError


def patched(name: str) -> bool:
    """Whether this run takes the new branch of patch `name` (see the module's doc)."""
    context = checkpointing("patched", is_async=False)
    if context is None:
        raise outside("patched")
    return _drive.run(ops.patched(context, name), context.client)


def deprecate_patch(name: str) -> bool:
    """Always True: the new branch of patch `name`, for code that dropped the old branch.
    A marker a run recorded here is passed over; none is recorded. Both faces."""
    context = current()
    if context is None or in_step():
        raise outside("deprecate_patch")
    return ops.deprecate_patch(context, name)


def outside(operation: str) -> NotInWorkflowError:
    if in_step():
        return ops.not_in_step(operation)
    return NotInWorkflowError(f"{operation} can only be called from a workflow")
