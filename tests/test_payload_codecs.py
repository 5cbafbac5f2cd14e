"""Payload codecs against a real coordinator: an encrypted workflow (its input, step
outputs, events, messages and output) runs on both faces and leaves no plaintext in
Postgres; a process without the key gets the raw payload and a clear error, never a crash
or garbage; a wrong key fails clearly; the coordinator stores codec payloads as opaque
bytes, so a raw gRPC reader sees the encoding name and the bytes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from cryptography.fernet import Fernet

import durable
import durable.aio
from durable import _payloads
from durable.codecs import FernetCodec, ZlibCodec
from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator, Stub, eventually, new_id, rpc_error

WAIT = 30.0
# In every payload of the encrypted workflows, and nowhere in their IDs, names or topics.
SECRET = "s3cret-plaintext-marker"
KEY = FernetCodec.generate_key()
OTHER_KEY = FernetCodec.generate_key()
CHAIN = "json+zlib+fernet"


def codecs(*keys: bytes) -> list[durable.PayloadCodec]:
    return [ZlibCodec(), FernetCodec(*(keys or (KEY,)))]


@pytest.fixture(autouse=True)
def plain_json_after() -> Iterator[None]:
    """Every test leaves the process-wide codecs as it found them: none."""
    yield
    durable.set_payload_codecs([])


@pytest.fixture(scope="module")
def aio(coordinator: Coordinator, sdk: None) -> None:
    durable.aio.configure(coordinator.address)


# --- the workflows --------------------------------------------------------------------


@durable.step
def enrich(order: dict[str, Any]) -> dict[str, Any]:
    return {"note": f"{order['id']} step", "items": len(order["items"])}


@durable.workflow(name="codecs.flow")
def flow(order: dict[str, Any]) -> dict[str, Any]:
    enriched = enrich(order)
    durable.set_event("progress", {"stage": f"{order['id']} event"})
    message = durable.recv("confirm", timeout=WAIT)
    return {"enriched": enriched, "message": message, "done": f"{order['id']} output"}


@durable.step
async def aenrich(order: dict[str, Any]) -> dict[str, Any]:
    return {"note": f"{order['id']} step", "items": len(order["items"])}


@durable.workflow(name="codecs.aflow")
async def aflow(order: dict[str, Any]) -> dict[str, Any]:
    enriched = await aenrich(order)
    await durable.aio.set_event("progress", {"stage": f"{order['id']} event"})
    message = await durable.aio.recv("confirm", timeout=WAIT)
    return {"enriched": enriched, "message": message, "done": f"{order['id']} output"}


def order(marker: str = SECRET) -> dict[str, Any]:
    return {"id": f"{marker} input", "items": [1, 2]}


def expected(marker: str = SECRET) -> dict[str, Any]:
    return {
        "enriched": {"note": f"{marker} input step", "items": 2},
        "message": {"ok": f"{marker} message"},
        "done": f"{marker} input output",
    }


def run_sync(marker: str = SECRET) -> str:
    handle = durable.start_workflow(flow, order(marker))
    assert durable.get_event(handle.workflow_id, "progress", timeout=WAIT) == {
        "stage": f"{marker} input event"
    }
    durable.send(handle.workflow_id, {"ok": f"{marker} message"}, topic="confirm")
    # Never received: it stays in durable.messages.
    durable.send(handle.workflow_id, f"{marker} unread", topic="unread")
    assert handle.result(timeout=WAIT) == expected(marker)
    return handle.workflow_id


async def run_async(marker: str = SECRET) -> str:
    handle = await durable.aio.start_workflow(aflow, order(marker))
    progress = await durable.aio.get_event(handle.workflow_id, "progress", timeout=WAIT)
    assert progress == {"stage": f"{marker} input event"}
    await durable.aio.send(handle.workflow_id, {"ok": f"{marker} message"}, topic="confirm")
    await durable.aio.send(handle.workflow_id, f"{marker} unread", topic="unread")
    assert await handle.result(timeout=WAIT) == expected(marker)
    return handle.workflow_id


# --- what Postgres holds ----------------------------------------------------------------

TABLES = ("workflows", "steps", "events", "event_history", "messages")


def rows_with(database_url: str, marker: str, workflow_id: str | None = None) -> list[str]:
    """The tables (of TABLES) with a row whose bytes or text hold `marker`; only the
    workflow's rows when `workflow_id` is given."""
    found = []
    with psycopg.connect(database_url) as conn:
        for table in TABLES:
            column = "destination_id" if table == "messages" else "workflow_id"
            where = f" WHERE {column} = %s" if workflow_id else ""
            rows = conn.execute(
                f"SELECT * FROM durable.{table}{where}",
                (workflow_id,) if workflow_id else (),
            ).fetchall()
            for row in rows:
                for value in row:
                    blob = bytes(value) if isinstance(value, bytes | memoryview) else None
                    if (blob is not None and marker.encode() in blob) or (
                        blob is None and marker in str(value)
                    ):
                        found.append(table)
    return found


def table_rows(database_url: str, table: str, workflow_id: str) -> int:
    column = "destination_id" if table == "messages" else "workflow_id"
    with psycopg.connect(database_url) as conn:
        query = f"SELECT count(*) FROM durable.{table} WHERE {column} = %s"
        row = conn.execute(query, (workflow_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_search_finds_plaintext_in_a_workflow_without_codecs(
    sdk: None, database_url: str
) -> None:
    workflow_id = run_sync("plain-marker")
    assert sorted(set(rows_with(database_url, "plain-marker", workflow_id))) == sorted(TABLES)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_an_encrypted_workflow_runs_and_leaves_no_plaintext_in_postgres(
    face: str, aio: None, database_url: str, stub: Stub
) -> None:
    durable.set_payload_codecs(codecs())
    workflow_id = run_sync() if face == "sync" else asyncio.run(run_async())
    for table in TABLES:
        assert table_rows(database_url, table, workflow_id) > 0, table
    assert rows_with(database_url, SECRET) == []
    # What the coordinator returns is what was stored: the chain's name and its bytes.
    workflow = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id)).workflow
    assert workflow.input.encoding == workflow.output.encoding == CHAIN
    steps = stub.ListSteps(pb.ListStepsRequest(workflow_id=workflow_id)).steps
    written = {step.kind: step.output.encoding for step in steps}
    assert written[pb.STEP_KIND_STEP] == written[pb.STEP_KIND_RECV] == CHAIN
    # A set_event step's own output is the coordinator's JSON null (the value is the event's).
    assert written[pb.STEP_KIND_SET_EVENT] == "json"


# --- readers without the key ------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted(sdk: None) -> str:
    """A finished encrypted workflow, with an event and an unread message."""
    durable.set_payload_codecs(codecs())
    try:
        return run_sync()
    finally:
        durable.set_payload_codecs([])


def test_a_process_without_the_codec_gets_raw_payloads_and_clear_errors(encrypted: str) -> None:
    info = durable.get_workflow(encrypted)
    assert info.status is durable.WorkflowStatus.SUCCESS
    for value in (info.input, info.output, durable.list_events(encrypted)["progress"]):
        assert isinstance(value, durable.RawPayload) and value.encoding == CHAIN
    steps = durable.list_steps(encrypted)
    assert isinstance(steps[0].output, durable.RawPayload)
    with pytest.raises(durable.PayloadCodecError, match="needs codec 'fernet'") as raised:
        durable.retrieve_workflow(encrypted).result(timeout=5)
    assert isinstance(raised.value, durable.PayloadError)
    assert raised.value.raw == info.output
    with pytest.raises(durable.PayloadCodecError, match="needs codec 'fernet'"):
        durable.get_event(encrypted, "progress", timeout=5)


def test_a_wrong_key_fails_clearly(encrypted: str) -> None:
    durable.set_payload_codecs(codecs(OTHER_KEY))
    with pytest.raises(durable.PayloadCodecError, match="wrong or retired key") as raised:
        durable.retrieve_workflow(encrypted).result(timeout=5)
    assert raised.value.raw is not None and raised.value.raw.encoding == CHAIN
    assert isinstance(durable.get_workflow(encrypted).output, durable.RawPayload)


def test_a_rotated_key_list_reads_records_of_the_old_key(encrypted: str) -> None:
    durable.set_payload_codecs(codecs(OTHER_KEY, KEY))
    assert durable.retrieve_workflow(encrypted).result(timeout=5) == expected()
    assert durable.get_event(encrypted, "progress", timeout=5) == {"stage": f"{SECRET} input event"}


def test_the_async_face_reads_and_fails_alike(aio: None, encrypted: str) -> None:
    async def result() -> Any:
        handle = await durable.aio.retrieve_workflow(encrypted)
        return await handle.result(timeout=5)

    async def event() -> Any:
        return await durable.aio.get_event(encrypted, "progress", timeout=5)

    with pytest.raises(durable.PayloadCodecError, match="needs codec 'fernet'"):
        asyncio.run(result())
    with pytest.raises(durable.PayloadCodecError, match="needs codec 'fernet'"):
        asyncio.run(event())
    durable.set_payload_codecs(codecs())
    assert asyncio.run(result()) == expected()
    assert asyncio.run(event()) == {"stage": f"{SECRET} input event"}


def test_a_raw_grpc_reader_sees_the_encoding_and_bytes(encrypted: str, stub: Stub) -> None:
    """What a client in another language sees: the encoding names the chain; with the key
    it undoes it itself (here with cryptography's Fernet and zlib, not the SDK)."""
    workflow = stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=encrypted)).workflow
    assert workflow.output.encoding == CHAIN
    plain = zlib.decompress(Fernet(KEY).decrypt(workflow.output.data))
    assert json.loads(plain) == expected()
    assert SECRET.encode() not in workflow.output.data


def test_the_cli_shows_what_it_cannot_decode_as_raw(
    coordinator: Coordinator, encrypted: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    command = [sys.executable, "-m", "durable", "--coordinator", coordinator.address]
    shown = subprocess.run(
        [*command, "workflows", "show", encrypted, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    output = json.loads(shown.stdout)["workflow"]["output"]
    assert output["encoding"] == CHAIN and "data_base64" in output
    # With $DURABLE_PAYLOAD_CODECS naming the codecs, the CLI decodes.
    env["DURABLE_PAYLOAD_CODECS"] = "tests.test_payload_codecs:cli_codecs"
    env["TEST_PAYLOAD_KEY"] = KEY.decode()
    shown = subprocess.run(
        [*command, "workflows", "show", encrypted, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["workflow"]["output"] == expected()


def cli_codecs() -> list[durable.PayloadCodec]:
    """$DURABLE_PAYLOAD_CODECS of the CLI test: the key from the environment."""
    return [ZlibCodec(), FernetCodec(os.environ["TEST_PAYLOAD_KEY"])]


# --- a worker without the key -----------------------------------------------------------


@durable.workflow(name="codecs.queued")
def queued(value: str) -> str:
    return f"{value} done"


def test_a_worker_without_the_key_leaves_the_workflow_waiting(
    sdk: None, caplog: pytest.LogCaptureFixture
) -> None:
    durable.set_payload_codecs(codecs())
    handle = durable.Queue("codecs-queue").enqueue(queued, SECRET)
    durable.set_payload_codecs([])
    caplog.set_level(logging.WARNING, logger="durable.worker")
    with durable.Worker([queued], lease_seconds=1, queues=[durable.Queue("codecs-queue")]):
        eventually(lambda: "needs codec 'fernet'" in caplog.text, timeout=WAIT)
        # Not recorded as the workflow's error: it waits for a process with the key.
        assert durable.get_workflow(handle.workflow_id).status is durable.WorkflowStatus.PENDING
    durable.set_payload_codecs(codecs())
    with durable.Worker([queued], lease_seconds=1, queues=[durable.Queue("codecs-queue")]):
        assert handle.result(timeout=WAIT) == f"{SECRET} done"


# --- the coordinator never reads codec payloads -----------------------------------------


def test_the_coordinator_stores_codec_payloads_as_opaque_bytes(stub: Stub) -> None:
    garbage = b"\x00\xff not json at all {"
    workflow_id = new_id("opaque")
    reply = stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name="codecs.opaque",
            input=pb.Payload(encoding="json+x-custom/v1.2", data=garbage),
        )
    )
    assert (reply.workflow.input.encoding, reply.workflow.input.data) == (
        "json+x-custom/v1.2",
        garbage,
    )
    # Only "json" itself is parsed: the same bytes as JSON are refused.
    error = rpc_error(
        lambda: stub.StartWorkflow(
            pb.StartWorkflowRequest(
                workflow_id=new_id("opaque"),
                name="codecs.opaque",
                input=pb.Payload(encoding="json", data=garbage),
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the codec hook itself --------------------------------------------------------------


class Upper:
    """A toy codec that is its own inverse on ASCII letters' case."""

    encoding = "swapcase"

    def encode(self, data: bytes) -> bytes:
        return data.swapcase()

    def decode(self, data: bytes) -> bytes:
        return data.swapcase()


def test_the_encoding_names_the_chain_in_order() -> None:
    durable.set_payload_codecs([Upper(), ZlibCodec()])
    payload = _payloads.encode({"a": "b"})
    assert payload.encoding == "json+swapcase+zlib"
    assert zlib.decompress(payload.data) == b'{"A":"B"}'
    assert _payloads.decode(payload) == {"a": "b"}
    # Plain JSON (records from before the codecs) still reads.
    assert _payloads.decode(pb.Payload(encoding="json", data=b"[1]")) == [1]
    durable.set_payload_codecs([])
    assert _payloads.encode(1).encoding == "json"


def test_a_foreign_encoding_is_a_raw_payload_not_an_error() -> None:
    raw = pb.Payload(encoding="protobuf/acme.Order", data=b"\x08\x01")
    assert _payloads.decode(raw) == durable.RawPayload("protobuf/acme.Order", b"\x08\x01")


@pytest.mark.parametrize(
    ("codec_list", "error"),
    [
        ([object()], TypeError),
        ([type("Bad", (Upper,), {"encoding": "a+b"})()], ValueError),
        ([type("Bad", (Upper,), {"encoding": "Caps"})()], ValueError),
        ([Upper(), Upper()], ValueError),
        ([type("Long", (Upper,), {"encoding": "x" * 60})()], ValueError),
    ],
)
def test_bad_codecs_are_refused_when_configured(codec_list: list[Any], error: type) -> None:
    with pytest.raises(error):
        durable.set_payload_codecs(codec_list)


def test_a_failing_codec_is_a_payload_codec_error() -> None:
    class Broken(Upper):
        encoding = "broken"

        def encode(self, data: bytes) -> bytes:
            raise RuntimeError("no KMS")

    durable.set_payload_codecs([Broken()])
    with pytest.raises(durable.PayloadCodecError, match=r"'broken' failed to encode.*no KMS"):
        _payloads.encode(1)


def test_configure_sets_the_codecs_of_both_faces(coordinator: Coordinator) -> None:
    client = durable.configure(coordinator.address, codecs=codecs())
    try:
        assert [codec.encoding for codec in _payloads.codecs()] == ["zlib", "fernet"]
        durable.aio.configure(coordinator.address, codecs=[])
        assert _payloads.codecs() == ()
        durable.configure(coordinator.address)  # None: unchanged
        assert _payloads.codecs() == ()
    finally:
        client.close()


def test_a_node_reader_gets_the_encoding_and_raw_bytes(
    coordinator: Coordinator, encrypted: str
) -> None:
    """examples/node/watch.js, written from the .proto alone, prints an event it cannot
    decode as its encoding and bytes (base64), not an error."""
    node = shutil.which("node")
    if node is None or not (ROOT / "examples" / "node" / "node_modules").is_dir():
        pytest.skip("needs node and examples/node/node_modules (make node-deps)")
    watched = subprocess.run(
        [
            node,
            "examples/node/watch.js",
            "--coordinator",
            coordinator.address,
            "--workflow-id",
            encrypted,
            "--key",
            "progress",
            "--timeout",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    [line] = watched.stdout.splitlines()
    printed = json.loads(line)
    assert printed["encoding"] == CHAIN
    sealed = base64.b64decode(printed["data_base64"])
    assert json.loads(zlib.decompress(Fernet(KEY).decrypt(sealed))) == {
        "stage": f"{SECRET} input event"
    }
