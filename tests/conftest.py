"""Fixtures: a real Postgres (DATABASE_URL or an embedded one), a fresh database per test
module, and real coordinator processes on loopback ports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# The suite starts helper programs (pg_ctl as another user, node, coordinators) with
# fork + exec from a process whose gRPC threads are running. With gRPC's fork handlers
# installed, the child runs gRPC code between fork and exec, and that has crashed the child
# before pg_ctl ran ("Check failed: next_worker->state == KICKED"). Nothing here forks
# without exec, which is all fork support is for: leave the handlers out. Set before gRPC
# is first imported (by the imports below).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from coordinator.embedded import start_embedded_postgres
from tests.support import (
    Activity,
    Coordinator,
    Stub,
    create_database,
    drop_database,
    running_coordinator,
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A Postgres server: DATABASE_URL when set, else an embedded one for this session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="durable-pg-") as data_dir:
        embedded = start_embedded_postgres(Path(data_dir) / "pgdata", temporary=True)
        yield embedded.url
        embedded.cleanup()


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test module."""
    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)


@pytest.fixture(scope="module")
def coordinator(database_url: str) -> Iterator[Coordinator]:
    """A coordinator process serving the module's database."""
    with running_coordinator(database_url) as process:
        yield process


@pytest.fixture(scope="module")
def other_coordinator(database_url: str, coordinator: Coordinator) -> Iterator[Coordinator]:
    """A second coordinator process on the same database as `coordinator`."""
    with running_coordinator(database_url) as process:
        yield process


@pytest.fixture(scope="module")
def stub(coordinator: Coordinator) -> Stub:
    return coordinator.stub


@pytest.fixture(scope="module")
def sdk(coordinator: Coordinator) -> Iterator[None]:
    """The SDK's default client pointed at the module's coordinator."""
    import durable

    client = durable.configure(coordinator.address)
    yield
    client.close()


@pytest.fixture(scope="module")
def activity(database_url: str) -> Iterator[Activity]:
    """A watcher of the module database's sessions in pg_stat_activity."""
    watcher = Activity(database_url)
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=32) as executor:
        yield executor
