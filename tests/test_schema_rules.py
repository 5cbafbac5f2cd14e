"""The rules docs/operations.md promises for distributing the schema (Citus, CockroachDB),
checked against the live catalog of a migrated database, so that a later migration cannot
quietly break them.

Citus enforces a primary key or unique constraint on a distributed table only when it
includes the distribution column, and foreign keys only between co-located distributed
tables (or towards reference tables). Every table of the `durable` schema is therefore
classified here, as in the document: a per-workflow table, distributed by the column
naming its workflow and co-located with `workflows`, or a small table kept whole on every
node (a reference table). A new table fails until it is classified in both places.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from coordinator.store import db
from tests.support import ROOT

DOC = ROOT / "docs" / "operations.md"

# Per-workflow tables and their distribution column (co-located with workflows.workflow_id).
DISTRIBUTED = {
    "workflows": "workflow_id",
    "steps": "workflow_id",
    "events": "workflow_id",
    "event_history": "workflow_id",
    "step_attempts": "workflow_id",
    "step_deadlines": "workflow_id",
    "messages": "destination_id",
}
# Small tables every node keeps whole (or a coordinator-node local table in Citus terms).
REFERENCE = {"workers", "queues", "schema_migrations", "schedules", "retention_policies"}
# Global feeds: ordered logs read across workflows, not per-workflow tables (the document
# gives each one's Citus plan). Their foreign keys may only point at workflows and cascade,
# so a feed's rows go with their workflow.
FEEDS = {"workflow_changes"}
# Unique indexes that do NOT include the distribution column, each with the redesign the
# document describes for it. Nothing may be added here without that paragraph.
NOT_DISTRIBUTABLE = {
    "workflows_queue_dedup_idx": "queue deduplication",
    "workflows_debounce_idx": "debounce",
}
# Sequences, which CockroachDB implements slowly and Citus only per node: each is named in
# the document with its replacement.
SEQUENCES = {"messages_message_id_seq", "workflow_changes_seq_seq"}
# The only server-side code: the trigger that appends to the workflow change log, each
# named in the document with its CockroachDB replacement.
FUNCTIONS = {"record_workflow_change"}
TRIGGERS = {"workflow_created", "workflow_status_changed"}


@pytest.fixture(scope="module")
def catalog(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    asyncio.run(db.migrate(database_url))
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def rows(conn: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql.encode()).fetchall()


def tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {
        name
        for (name,) in rows(
            conn,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'durable' AND c.relkind IN ('r', 'p')",
        )
    }


def unique_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str, list[str], bool]]:
    """(table, index, key columns in order, is primary key) for each unique index (primary
    keys and unique constraints included) of the durable schema."""
    found = rows(
        conn,
        """SELECT t.relname, i.relname, i2.indisprimary,
                  array_agg(a.attname ORDER BY k.ord)
             FROM pg_index i2
             JOIN pg_class i ON i.oid = i2.indexrelid
             JOIN pg_class t ON t.oid = i2.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             CROSS JOIN LATERAL unnest(i2.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE n.nspname = 'durable' AND i2.indisunique
            GROUP BY t.relname, i.relname, i2.indisprimary""",
    )
    return [(table, index, list(columns), primary) for table, index, primary, columns in found]


def test_every_table_is_classified_for_distribution(catalog: psycopg.Connection[Any]) -> None:
    unclassified = tables(catalog) - DISTRIBUTED.keys() - REFERENCE - FEEDS
    assert not unclassified, (
        f"tables {sorted(unclassified)} are not classified: decide their distribution in "
        "docs/operations.md ('Past one primary') and in tests/test_schema_rules.py"
    )


def test_every_table_has_a_primary_key(catalog: psycopg.Connection[Any]) -> None:
    with_key = {table for table, _, _, primary in unique_indexes(catalog) if primary}
    assert tables(catalog) <= with_key, sorted(tables(catalog) - with_key)


def test_per_workflow_primary_keys_lead_with_the_workflow_and_namespace(
    catalog: psycopg.Connection[Any],
) -> None:
    for table, index, columns, primary in unique_indexes(catalog):
        if primary and table in DISTRIBUTED:
            assert set(columns[:2]) == {DISTRIBUTED[table], "namespace"}, (table, index, columns)


def test_unique_constraints_include_the_distribution_column(
    catalog: psycopg.Connection[Any],
) -> None:
    breaking = {
        index
        for table, index, columns, _ in unique_indexes(catalog)
        if table in DISTRIBUTED and DISTRIBUTED[table] not in columns
    }
    # Both ways: a new one must be designed for, and a fixed one taken off the list.
    assert breaking == NOT_DISTRIBUTABLE.keys(), breaking


def test_foreign_keys_join_co_located_tables_only(catalog: psycopg.Connection[Any]) -> None:
    keys = rows(
        catalog,
        """SELECT c.conrelid::regclass::text, c.confrelid::regclass::text,
                  (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.conkey)
                     WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
                  (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.confkey)
                     WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
            WHERE n.nspname = 'durable' AND c.contype = 'f'""",
    )
    cascading = {
        source.removeprefix("durable.")
        for (source,) in rows(
            catalog,
            """SELECT c.conrelid::regclass::text FROM pg_constraint c
                 JOIN pg_namespace n ON n.oid = c.connamespace
                WHERE n.nspname = 'durable' AND c.contype = 'f'
                  AND c.confrelid = 'durable.workflows'::regclass AND c.confdeltype = 'c'""",
        )
    }
    for source, target, columns, referenced in keys:
        source, target = source.removeprefix("durable."), target.removeprefix("durable.")
        if source in FEEDS:
            assert target == "workflows" and source in cascading, (source, target)
            continue
        if target in REFERENCE:
            continue  # towards a reference table: allowed from anywhere
        assert source in DISTRIBUTED and target in DISTRIBUTED, (source, target)
        # Co-located: the key joins the distribution columns of both sides.
        pairs = dict(zip(referenced, columns, strict=True))
        assert pairs.get(DISTRIBUTED[target]) == DISTRIBUTED[source], (source, target, columns)


def test_sequences_and_server_side_code_are_the_documented_ones(
    catalog: psycopg.Connection[Any],
) -> None:
    listed = rows(catalog, "SELECT sequencename FROM pg_sequences WHERE schemaname = 'durable'")
    sequences = {name for (name,) in listed}
    assert sequences == SEQUENCES, sequences
    # Only the documented functions and triggers: each is one more thing to port.
    functions = rows(
        catalog,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'durable'",
    )
    assert {name for (name,) in functions} == FUNCTIONS
    triggers = rows(
        catalog,
        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'durable' AND NOT t.tgisinternal",
    )
    assert {name for (name,) in triggers} == TRIGGERS


def test_the_document_states_each_tables_plan() -> None:
    text = DOC.read_text(encoding="utf-8")
    plan = text[text.index("## Past one primary") :]
    for table, column in DISTRIBUTED.items():
        assert re.search(rf"`durable\.{table}`[^\n]*`{column}`", plan), (table, column)
    for table in REFERENCE:
        assert f"`durable.{table}`" in plan, table
    for index, topic in NOT_DISTRIBUTABLE.items():
        assert f"`{index}`" in plan and topic in plan.lower(), index
    for sequence in SEQUENCES:
        assert f"`{sequence}`" in plan, sequence
    for table in FEEDS:
        assert re.search(rf"`durable\.{table}`[^\n]*global feed", plan), table
    for name in FUNCTIONS | TRIGGERS:
        assert f"`{name}`" in plan, name
