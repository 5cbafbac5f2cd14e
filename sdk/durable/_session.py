"""The worker sessions started in this process (sync and async workers alike, each with its
client), so that workflows the process starts run under one of them (and are recovered by
other workers if the process dies)."""

from __future__ import annotations

import threading

_lock = threading.Lock()
# (executor_id, client) of each started worker, oldest first.
_sessions: list[tuple[str, object]] = []


def register(executor_id: str, client: object) -> None:
    with _lock:
        _sessions.append((executor_id, client))


def unregister(executor_id: str) -> None:
    with _lock:
        _sessions[:] = [s for s in _sessions if s[0] != executor_id]


def executor_for(client: object) -> str:
    """The executor ID of the latest started worker talking through `client` ('' if none).

    Only a worker on the same client counts: its session is known to that coordinator.
    """
    with _lock:
        for executor_id, worker_client in reversed(_sessions):
            if worker_client is client:
                return executor_id
    return ""
