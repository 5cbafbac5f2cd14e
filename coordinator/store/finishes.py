"""FinishWorkflow's writes, batched by group commit (group_commit.py).

A finish NOTIFYs the workflow's waiters (AwaitWorkflow, follow streams), and Postgres
serializes the commits of notifying transactions on one database-wide lock: finishes
committed one by one queue behind each other's commit and WAL flush. Under load (2,000
workflows ending at once, bench/README.md) that lock was where the coordinators'
connections waited most. A batch is one UPDATE over unnest()ed arrays with a NOTIFY per
row: one commit, one turn of the lock, for the lot. A finish that wrote nothing is
explained as the single path does (workflows.finish): the workflow as it is, or NOT_OWNER.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from coordinator.errors import CoordinatorError
from coordinator.store import rows, workflows
from coordinator.store.batched import Writer, run_batch
from coordinator.store.records import Outcome, WorkflowRecord
from coordinator.store.steps import fence
from coordinator.store.workers import WORK_CHANNEL

# workflows._FINISH for many rows. The rows are locked in the order given (sorted by key,
# so concurrent batches take their locks in one order) before they are updated.
_FINISH_MANY = f"""
WITH input AS (
    SELECT * FROM unnest(%(ns)b::text[], %(wf)b::text[], %(exec)b::text[],
                         %(status)b::text[], %(out_enc)b::text[], %(out_data)b::bytea[],
                         %(err_type)b::text[], %(err_msg)b::text[], %(err_details)b::text[])
           WITH ORDINALITY AS input(ns, wf, exec, status, out_enc, out_data,
                                    err_type, err_msg, err_details, ord)
), target AS (
    SELECT input.*
      FROM input
      JOIN durable.workflows w ON (w.workflow_id, w.namespace) = (input.wf, input.ns)
     WHERE w.status = 'PENDING' AND (input.exec = '' OR w.executor_id = input.exec)
     ORDER BY input.ord
       FOR UPDATE OF w
), finished AS (
    UPDATE durable.workflows w
       SET status = target.status,
           output_encoding = target.out_enc, output_data = target.out_data,
           error_type = target.err_type, error_message = target.err_msg,
           error_details = target.err_details,
           updated_at = clock_timestamp()
      FROM target
     WHERE (w.workflow_id, w.namespace) = (target.wf, target.ns)
 RETURNING target.ord, {", ".join(f"w.{c.strip()}" for c in rows.WORKFLOW_COLUMNS.split(","))}
)
SELECT finished.*,
       pg_notify('{workflows.WORKFLOW_CHANNEL}',
                 json_build_object('n', target.ns, 'w', target.wf)::text),
       -- A queued workflow's end frees a slot of its queue: wake the pollers.
       CASE WHEN finished.queue_name IS NOT NULL
            THEN pg_notify('{WORK_CHANNEL}', json_build_object('n', target.ns)::text) END
  FROM finished
  JOIN target ON target.ord = finished.ord"""


@dataclass(frozen=True)
class FinishWrite:
    """One FinishWorkflow, as workflows.finish takes it."""

    namespace: str
    workflow_id: str
    result: Outcome
    executor_id: str = ""

    def keys(self) -> tuple[Hashable, ...]:
        return (("workflow", self.namespace, self.workflow_id),)


FinishResult = tuple[WorkflowRecord, bool]


async def finish_one(pool: AsyncConnectionPool, write: FinishWrite) -> FinishResult:
    return await workflows.finish(
        pool, write.namespace, write.workflow_id, write.result, executor_id=write.executor_id
    )


async def finish_many(
    pool: AsyncConnectionPool, writes: Sequence[FinishWrite]
) -> list[FinishResult | Exception]:
    """Finish several workflows in one statement; per write its FinishResult or its error
    (NOT_OWNER). Raises RunAlone if the statement failed (nothing was written),
    OperationalError if the database is unreachable."""
    order = sorted(range(len(writes)), key=lambda i: (writes[i].namespace, writes[i].workflow_id))
    sorted_writes = [writes[i] for i in order]
    outcomes = [rows.outcome_columns(w.result) for w in sorted_writes]
    params: dict[str, Any] = {
        "ns": [w.namespace for w in sorted_writes],
        "wf": [w.workflow_id for w in sorted_writes],
        "exec": [w.executor_id for w in sorted_writes],
        "status": [workflows.finish_status(w.result).value for w in sorted_writes],
        **{column: [o[column] for o in outcomes] for column in outcomes[0]},
    }
    results: list[FinishResult | Exception | None] = [None] * len(writes)
    async with pool.connection() as conn:
        for row in await run_batch(conn, _FINISH_MANY, params):
            results[order[row[0] - 1]] = (rows.workflow(row[1:]), False)
    for i, write in enumerate(writes):
        if results[i] is not None:
            continue
        try:  # as workflows.finish does when its UPDATE wrote nothing
            current = await workflows.get(pool, write.namespace, write.workflow_id)
            fence(write.workflow_id, current.executor_id, write.executor_id)
            results[i] = (current, True)
        except CoordinatorError as exc:
            results[i] = exc
    return [result for result in results if result is not None]


def finish_writer(
    pool: AsyncConnectionPool, *, max_batch: int, observe: Callable[[int], None] | None = None
) -> Writer[FinishWrite, FinishResult]:
    """FinishWorkflow's writes."""
    return Writer(
        lambda w: finish_one(pool, w),
        lambda ws: finish_many(pool, ws),
        FinishWrite.keys,
        max_batch=max_batch,
        observe=observe,
    )
