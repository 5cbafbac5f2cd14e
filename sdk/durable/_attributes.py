"""Search attributes: a running workflow sets them (the sync face; the operation is
`_core.ops.set_attributes`)."""

from __future__ import annotations

from collections.abc import Mapping

from durable import _drive
from durable._core import ops, specs
from durable._core.context import checkpointing, in_step
from durable.errors import NotInWorkflowError


def attributes_of(
    mapping: Mapping[str, str | None] | None, kv: dict[str, str | None], what: str
) -> dict[str, str]:
    """The attributes of a `set_attributes(mapping, **kv)` call (kv wins on a clash)."""
    merged: dict[str, str | None] = dict(mapping or {})
    merged.update(kv)
    return specs.check_attributes(merged, what, removals=True)


def outside(inside_step: bool) -> NotInWorkflowError:
    if inside_step:
        return ops.not_in_step("set_attributes")
    return NotInWorkflowError("set_attributes can only be called from a workflow")


def set_attributes(attributes: Mapping[str, str | None] | None = None, /, **kv: str | None) -> None:
    """Merge search attributes into the running workflow's: `set_attributes(order="4711")`
    or `set_attributes({"order": "4711"})`; None or "" removes a key. They show in
    `get_workflow(...).attributes` and filter `list_workflows(attributes=...)`.

    Checkpointed like a step: a resumed workflow does not set them again (what the first
    run set stays). The coordinator checks the limits (at most 32 keys after the merge,
    keys of 1-64 characters of [A-Za-z0-9._-], values up to 256 characters): else
    CoordinatorError (INVALID_ARGUMENT naming `attributes`). TypeError for a value that is
    not a str; ValueError for no attributes at all.
    """
    given = attributes_of(attributes, kv, "set_attributes")
    context = checkpointing("set_attributes", is_async=False)
    if context is None:
        raise outside(in_step())
    _drive.run(ops.set_attributes(context, given), context.client)
