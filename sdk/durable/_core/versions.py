"""Application versions: which code a worker runs, so that a workflow is only ever replayed
by the code that recorded its history (the coordinator hands a versioned workflow only to
workers of its version)."""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Iterable

from durable._core.specs import WorkflowSpec

ENV = "DURABLE_APP_VERSION"


def derived(specs: Iterable[WorkflowSpec]) -> str:
    """A version named after the code of these workflows: their names and source text
    (the bytecode where the source cannot be read). Code that changes a workflow changes
    the version; code that changes only its steps does not (set a version explicitly when
    that matters, e.g. the deployment's commit)."""
    digest = hashlib.sha256()
    for spec in sorted(specs, key=lambda s: s.name):
        try:
            code = inspect.getsource(spec.fn).encode()
        except (OSError, TypeError):
            code = getattr(getattr(spec.fn, "__code__", None), "co_code", b"")
        digest.update(spec.name.encode() + b"\0" + code + b"\0")
    return f"code-{digest.hexdigest()[:20]}"


def resolve(explicit: str | None, specs: Iterable[WorkflowSpec]) -> str:
    """The version a worker declares: the one given, else $DURABLE_APP_VERSION, else
    derived from the workflows it runs."""
    return explicit or os.environ.get(ENV) or derived(specs)
