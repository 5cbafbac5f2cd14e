"""The worker sessions started in this process (sync and async workers alike, each with its
client), so that workflows the process starts run under one of them (and are recovered by
other workers if the process dies)."""

from __future__ import annotations

import threading

_lock = threading.Lock()
# (executor_id, client, app_version) of each started worker, oldest first.
_sessions: list[tuple[str, object, str]] = []


def register(executor_id: str, client: object, app_version: str = "") -> None:
    with _lock:
        _sessions.append((executor_id, client, app_version))


def unregister(executor_id: str) -> None:
    with _lock:
        _sessions[:] = [s for s in _sessions if s[0] != executor_id]


def executor_for(client: object) -> str:
    """The executor ID of the latest started worker talking through `client` ('' if none).

    Only a worker on the same client counts: its session is known to that coordinator.
    """
    return session_for(client)[0]


def session_for(client: object) -> tuple[str, str]:
    """(executor ID, application version) of the latest started worker talking through
    `client`; ('', '') if none."""
    with _lock:
        for executor_id, worker_client, app_version in reversed(_sessions):
            if worker_client is client:
                return executor_id, app_version
    return "", ""
