"""Schema migrations: coordinators starting together on a fresh database migrate it once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    ROOT,
    RPC_TIMEOUT,
    Coordinator,
    create_database,
    drop_database,
    running_coordinator,
)

MIGRATIONS = sorted(
    (int(match[1]), match[2])
    for path in Path(ROOT, "coordinator", "migrations").glob("*.sql")
    if (match := re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", path.name))
)


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)


def applied_migrations(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT version, name FROM durable.schema_migrations ORDER BY version"
        ).fetchall()
    return [(version, name) for version, name in rows]


def applying_lines(process: Coordinator) -> list[str]:
    return [line for line in process.log().splitlines() if "applying migration" in line]


def test_coordinators_starting_together_apply_each_migration_exactly_once(
    fresh_database: str,
) -> None:
    assert MIGRATIONS, "no migration files found"
    # All processes start before any is waited on, so their migrations race.
    processes = [Coordinator(fresh_database) for _ in range(4)]
    try:
        for process in processes:
            process.wait_serving()

        assert applied_migrations(fresh_database) == MIGRATIONS
        # Each migration ran in exactly one process; the others found nothing to do.
        applying = [line for process in processes for line in applying_lines(process)]
        assert len(applying) == len(MIGRATIONS)
        for version, name in MIGRATIONS:
            assert sum(f"applying migration {version:04d}_{name}" in line for line in applying) == 1

        # Every coordinator serves the one schema: a workflow started on one is seen by all.
        first = processes[0].stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id="migrated", name="m"), timeout=RPC_TIMEOUT
        )
        assert first.created
        for process in processes[1:]:
            again = process.stub.StartWorkflow(
                pb.StartWorkflowRequest(workflow_id="migrated", name="m"), timeout=RPC_TIMEOUT
            )
            assert not again.created
    finally:
        for process in processes:
            process.stop()


def test_restarting_on_a_migrated_database_applies_nothing_and_keeps_data(
    fresh_database: str,
) -> None:
    with running_coordinator(fresh_database) as first:
        first.stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id="kept", name="m"), timeout=RPC_TIMEOUT
        )
    assert len(applying_lines(first)) == len(MIGRATIONS)

    with running_coordinator(fresh_database) as second:
        assert applying_lines(second) == []
        assert applied_migrations(fresh_database) == MIGRATIONS
        reply = second.stub.GetWorkflow(
            pb.GetWorkflowRequest(workflow_id="kept"), timeout=RPC_TIMEOUT
        )
        assert reply.workflow.status == pb.WORKFLOW_STATUS_PENDING
