"""SDK bugs the suite has found and that are not fixed yet, and the marks of the tests that
show them. When one is fixed, its strict xfail turns into a failure (XPASS): delete the
bug here and its marks go with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.processes import FACES

# Reproduced by test_coordinator_crash_mid_step.py[async] (strict: it fails every run);
# also ends some workflows of test_coordinator_crash.py[async] (in about one run in ten
# at CI scale, one in three at full scale).
ASYNC_SESSION_INTERNAL = (
    "SDK bug (async face): when the coordinator dies, a write on the Session stream can fail"
    " in gRPC Core before the stream's reader has seen UNAVAILABLE; grpc.aio then reports the"
    " call as INTERNAL 'Internal error from Core' (grpc/grpc#36066), AsyncSessionStream fails"
    " every waiting call with it, and INTERNAL is not retried: the workflow's caller gets"
    " CoordinatorError and the workflow stays PENDING"
)


def faces(*, async_bug: str | None = None, strict: bool = True) -> list[Any]:
    """FACES as pytest parameters, the async one marked xfail for `async_bug` if given.
    `strict=False` for a scenario where the bug shows only in some runs."""
    if async_bug is None:
        return list(FACES)
    mark = pytest.mark.xfail(strict=strict, reason=async_bug)
    return [pytest.param(face, marks=mark) if face == "async" else face for face in FACES]
