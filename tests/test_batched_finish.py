"""FinishWorkflow's batch statement (coordinator/store/finishes.py): one commit for many
finishes, each with the meaning of the single path."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from coordinator.errors import NotOwner
from coordinator.store import db, finishes
from coordinator.store.records import Failure, Payload, Status
from durable.v1 import coordinator_pb2 as pb
from tests.support import RPC_TIMEOUT, Stub, duration, new_id, payload, value_of

NS = "default"


def started(stub: Stub, executor_id: str = "") -> str:
    workflow_id = new_id("finish")
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id, name="tests.finish", input=payload({}), executor_id=executor_id
        ),
        timeout=RPC_TIMEOUT,
    )
    return workflow_id


@asynccontextmanager
async def open_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    await db.migrate(database_url)
    pool = await db.open_pool(database_url, 1, 2)
    try:
        yield pool
    finally:
        await pool.close()


def test_a_batch_finishes_each_workflow_as_the_single_path_would(
    stub: Stub, database_url: str
) -> None:
    owner, stranger = f"exec-{uuid.uuid4().hex}", f"exec-{uuid.uuid4().hex}"
    fresh, failed, owned, done = started(stub), started(stub), started(stub, owner), started(stub)
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=done, output=payload("first")), timeout=RPC_TIMEOUT
    )
    out = Payload("json", json.dumps("second").encode())

    async def scenario() -> list[finishes.FinishResult | Exception]:
        async with open_pool(database_url) as pool:
            return await finishes.finish_many(
                pool,
                [
                    finishes.FinishWrite(NS, fresh, out),
                    finishes.FinishWrite(NS, failed, Failure("builtins.ValueError", "no", "")),
                    finishes.FinishWrite(NS, owned, out, executor_id=stranger),
                    finishes.FinishWrite(NS, done, out),
                ],
            )

    results = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    (fresh_record, fresh_before), (failed_record, failed_before) = results[:2]  # type: ignore[misc]
    assert (fresh_record.status, fresh_before) == (Status.SUCCESS, False)
    assert (failed_record.status, failed_before) == (Status.ERROR, False)
    assert isinstance(results[2], NotOwner)
    done_record, done_before = results[3]  # type: ignore[misc]
    assert done_before is True  # finished before: the first result stands
    assert done_record.result == Payload("json", json.dumps("first").encode())
    still = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=owned), timeout=RPC_TIMEOUT)
    assert still.workflow.status == pb.WORKFLOW_STATUS_PENDING


def test_concurrent_finishes_wake_every_waiter_with_its_own_result(stub: Stub) -> None:
    """Many finishes at once share commits; each AwaitWorkflow still gets its workflow's
    own output, woken by its NOTIFY."""
    workflow_ids = [started(stub) for _ in range(64)]
    with ThreadPoolExecutor(max_workers=len(workflow_ids) * 2) as pool:
        waits = [
            pool.submit(
                stub.AwaitWorkflow,
                pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(30)),
                timeout=60,
            )
            for workflow_id in workflow_ids
        ]
        finished = [
            pool.submit(
                stub.FinishWorkflow,
                pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload(workflow_id)),
                timeout=RPC_TIMEOUT,
            )
            for workflow_id in workflow_ids
        ]
        assert [f.result().already_finished for f in finished] == [False] * len(workflow_ids)
        outputs = [value_of(w.result().workflow.output) for w in waits]
    assert outputs == workflow_ids
