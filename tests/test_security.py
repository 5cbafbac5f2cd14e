"""TLS, mutual TLS, bearer tokens and namespace isolation, over real gRPC and Postgres."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

import durable
import durable.aio
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from tests.support import (
    ROOT,
    RPC_TIMEOUT,
    Coordinator,
    duration,
    error_info,
    eventually,
    new_id,
    payload,
    rpc_error,
    value_of,
)

TOKENS = {"team-a": "token-of-team-a-7f3a9", "team-b": "token-of-team-b-c81d2"}


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca_key = _key()
    ca_cert = _cert("test CA", ca_key, None, ca=True)
    ca_path, _ = _write(directory, "ca", ca_cert, ca_key)
    server_key, client_key, rogue_key = _key(), _key(), _key()
    server = _write(
        directory,
        "server",
        _cert("localhost", server_key, ("test CA", ca_key), server=True),
        server_key,
    )
    client = _write(
        directory, "client", _cert("client", client_key, ("test CA", ca_key)), client_key
    )
    rogue = _write(directory, "rogue", _cert("rogue", rogue_key, None), rogue_key)
    return Certs(ca_path, *server, *client, *rogue)


# --- coordinators --------------------------------------------------------------------------


def serving(channel: grpc.Channel) -> bool:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def tls_coordinator(database_url: str, certs: Certs) -> Iterator[Coordinator]:
    process = Coordinator(
        database_url, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)
    )
    try:
        with tls_channel(process, certs) as channel:
            eventually(lambda: serving(channel), timeout=30)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def mtls_coordinator(database_url: str, certs: Certs) -> Iterator[Coordinator]:
    process = Coordinator(
        database_url,
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--tls-client-ca",
        str(certs.ca),
    )
    try:
        with tls_channel(process, certs, client=(certs.client_cert, certs.client_key)) as channel:
            eventually(lambda: serving(channel), timeout=30)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def token_coordinator(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Coordinator]:
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens_file.write_text(
        "# namespace=token\n" + "".join(f"{ns}={token}\n" for ns, token in TOKENS.items())
    )
    process = Coordinator(database_url, "--tokens-file", str(tokens_file))
    try:
        process.wait_serving()  # health needs no token: probes must work unchanged
        yield process
    finally:
        process.stop()


def tls_channel(
    process: Coordinator, certs: Certs, client: tuple[Path, Path] | None = None
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(),
        client[1].read_bytes() if client else None,
        client[0].read_bytes() if client else None,
    )
    return grpc.secure_channel(process.address, credentials)


Metadata = tuple[tuple[str, str | bytes], ...]


def call_metadata(namespace: str) -> Metadata:
    return (("authorization", f"Bearer {TOKENS[namespace]}"),)


def start(
    stub: pb_grpc.CoordinatorServiceStub, workflow_id: str, namespace: str
) -> pb.StartWorkflowResponse:
    return stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name="secure.flow"),
        timeout=RPC_TIMEOUT,
        metadata=call_metadata(namespace),
    )


def set_event(
    stub: pb_grpc.CoordinatorServiceStub,
    workflow_id: str,
    step_id: int,
    value: object,
    namespace: str,
) -> None:
    stub.SetEvent(
        pb.SetEventRequest(workflow_id=workflow_id, step_id=step_id, key="k", value=payload(value)),
        timeout=RPC_TIMEOUT,
        metadata=call_metadata(namespace),
    )


def read_event(
    stub: pb_grpc.CoordinatorServiceStub, workflow_id: str, namespace: str, wait: float = 0.0
) -> list[pb.GetEventResponse]:
    request = pb.GetEventRequest(workflow_id=workflow_id, key="k", timeout=duration(wait))
    return list(stub.GetEvent(request, timeout=RPC_TIMEOUT, metadata=call_metadata(namespace)))


# --- TLS -----------------------------------------------------------------------------------


def test_tls_coordinator_serves_a_client_that_verifies_its_certificate(
    tls_coordinator: Coordinator, certs: Certs
) -> None:
    with tls_channel(tls_coordinator, certs) as channel:
        reply = pb_grpc.CoordinatorServiceStub(channel).StartWorkflow(
            pb.StartWorkflowRequest(name="tls.flow"), timeout=RPC_TIMEOUT
        )
    assert reply.created


def test_tls_coordinator_refuses_a_plaintext_client(tls_coordinator: Coordinator) -> None:
    with grpc.insecure_channel(tls_coordinator.address) as channel:
        error = rpc_error(
            lambda: pb_grpc.CoordinatorServiceStub(channel).GetWorkflow(
                pb.GetWorkflowRequest(workflow_id="x"), timeout=3
            )
        )
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_sdk_reaches_a_tls_coordinator(tls_coordinator: Coordinator, certs: Certs) -> None:
    client = durable.Client(tls_coordinator.address, tls=durable.TLS.from_files(certs.ca))
    try:
        assert durable.get_event(new_id(), "none", timeout=0, client=client) is None
    finally:
        client.close()


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(
    mtls_coordinator: Coordinator, certs: Certs
) -> None:
    def get_workflow_as(client: tuple[Path, Path] | None) -> grpc.StatusCode:
        request = pb.GetWorkflowRequest(workflow_id="no-such-workflow")
        with tls_channel(mtls_coordinator, certs, client) as channel:
            stub = pb_grpc.CoordinatorServiceStub(channel)
            code: grpc.StatusCode = rpc_error(lambda: stub.GetWorkflow(request, timeout=5)).code()
            return code

    # Served (the handshake passed, the workflow does not exist) only with the CA's client.
    assert get_workflow_as((certs.client_cert, certs.client_key)) == grpc.StatusCode.NOT_FOUND
    assert get_workflow_as(None) == grpc.StatusCode.UNAVAILABLE
    assert get_workflow_as((certs.rogue_cert, certs.rogue_key)) == grpc.StatusCode.UNAVAILABLE


# --- bearer tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer not-a-known-token"),),
        (("authorization", f"Basic {TOKENS['team-a']}"),),
        (("authorization", "Bearer "),),
    ],
    ids=["missing", "unknown", "not-bearer", "empty"],
)
def test_calls_without_a_valid_token_are_unauthenticated(
    token_coordinator: Coordinator, metadata: Metadata
) -> None:
    error = rpc_error(
        lambda: token_coordinator.stub.StartWorkflow(
            pb.StartWorkflowRequest(name="flow"), timeout=RPC_TIMEOUT, metadata=metadata
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "UNAUTHENTICATED"
    stream = token_coordinator.stub.GetEvent(
        pb.GetEventRequest(workflow_id="w", key="k"), timeout=RPC_TIMEOUT, metadata=metadata
    )
    assert rpc_error(lambda: list(stream)).code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_never_appear_in_the_log(token_coordinator: Coordinator) -> None:
    rpc_error(
        lambda: token_coordinator.stub.GetWorkflow(
            pb.GetWorkflowRequest(workflow_id="w"),
            timeout=RPC_TIMEOUT,
            metadata=(("authorization", "Bearer secret-that-is-wrong"),),
        )
    )
    log = token_coordinator.log()
    assert "secret-that-is-wrong" not in log
    assert not any(token in log for token in TOKENS.values())


def test_namespaces_do_not_see_each_others_workflows_or_events(
    token_coordinator: Coordinator,
) -> None:
    stub = token_coordinator.stub
    shared_id = new_id("shared")
    assert start(stub, shared_id, "team-a").created
    set_event(stub, shared_id, 1, "from a", "team-a")

    error = rpc_error(
        lambda: stub.GetWorkflow(
            pb.GetWorkflowRequest(workflow_id=shared_id),
            timeout=RPC_TIMEOUT,
            metadata=call_metadata("team-b"),
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert [m.WhichOneof("outcome") for m in read_event(stub, shared_id, "team-b")] == ["timed_out"]

    # The same ID in another namespace is another workflow, with its own events.
    assert start(stub, shared_id, "team-b").created
    set_event(stub, shared_id, 1, "from b", "team-b")
    assert value_of(read_event(stub, shared_id, "team-a")[0].event.value) == "from a"
    assert value_of(read_event(stub, shared_id, "team-b")[0].event.value) == "from b"


def test_a_waiting_reader_is_not_woken_by_another_namespace(token_coordinator: Coordinator) -> None:
    stub = token_coordinator.stub
    workflow_id = new_id("waited")
    start(stub, workflow_id, "team-a")
    start(stub, workflow_id, "team-b")
    request = pb.GetEventRequest(workflow_id=workflow_id, key="k", timeout=duration(30))
    waiting = stub.GetEvent(request, timeout=RPC_TIMEOUT + 30, metadata=call_metadata("team-a"))
    try:
        set_event(stub, workflow_id, 1, "b's value", "team-b")
        set_event(stub, workflow_id, 1, "a's value", "team-a")
        first = next(waiting)
    finally:
        waiting.cancel()
    assert value_of(first.event.value) == "a's value"


def test_sdk_with_a_token_runs_workflows_in_its_namespace(token_coordinator: Coordinator) -> None:
    client = durable.Client(token_coordinator.address, token=TOKENS["team-a"])
    stranger = durable.Client(token_coordinator.address, token="wrong")
    try:
        started = client.start_workflow(new_id(), "sdk.flow", payload({"args": [], "kwargs": {}}))
        workflow_id = started.workflow.workflow_id
        assert client.get_workflow(workflow_id).status == pb.WORKFLOW_STATUS_PENDING
        with pytest.raises(durable.UnauthenticatedError):
            stranger.get_workflow(workflow_id)
    finally:
        client.close()
        stranger.close()


# --- start-up checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "server.crt"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.crt"], "--tls-client-ca needs --tls-cert"),
        (["--tokens-file", "/nonexistent/tokens"], "No such file"),
    ],
)
def test_bad_security_flags_stop_the_coordinator_with_a_message(
    args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "--database-url", "postgresql://unused", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_a_malformed_tokens_file_is_reported_without_its_secrets(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("team-a=fine-token\nNot A Namespace=super-secret-value\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator",
            "--database-url",
            "postgresql://unused",
            "--tokens-file",
            str(tokens_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "entry 2" in result.stderr
    assert "super-secret-value" not in result.stderr


# --- the async client -----------------------------------------------------------------------


@durable.workflow(name="tests.security.async_flow")
async def async_flow() -> str:
    await durable.aio.set_event("where", "namespace")
    return "done"


def test_the_async_client_reaches_tls_and_mutual_tls_coordinators(
    tls_coordinator: Coordinator, mtls_coordinator: Coordinator, certs: Certs
) -> None:
    async def main() -> None:
        tls = durable.TLS.from_files(certs.ca)
        async with durable.aio.AsyncClient(tls_coordinator.address, tls=tls) as client:
            assert await durable.aio.get_event(new_id(), "none", 0, client=client) is None
        mutual = durable.TLS.from_files(certs.ca, certs.client_cert, certs.client_key)
        async with durable.aio.AsyncClient(mtls_coordinator.address, tls=mutual) as client:
            with pytest.raises(durable.WorkflowNotFoundError):
                await durable.aio.get_workflow("no-such-workflow", client=client)

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_the_async_client_runs_workflows_in_its_tokens_namespace(
    token_coordinator: Coordinator,
) -> None:
    no_retry = durable.RetryPolicy(total_seconds=0)

    async def main() -> None:
        async with (
            durable.aio.AsyncClient(token_coordinator.address, token=TOKENS["team-a"]) as team_a,
            durable.aio.AsyncClient(token_coordinator.address, token=TOKENS["team-b"]) as team_b,
            durable.aio.AsyncClient(
                token_coordinator.address, token="wrong", retry=no_retry
            ) as stranger,
        ):
            durable.aio.configure(token_coordinator.address, token=TOKENS["team-a"])
            try:
                handle = await durable.aio.start_workflow(async_flow)
                assert await handle.result(timeout=30) == "done"
            finally:
                await durable.aio.close()
                durable.aio.configure()  # back to the defaults, for the tests after this one
            info = await durable.aio.get_workflow(handle.workflow_id, client=team_a)
            assert info.status is durable.WorkflowStatus.SUCCESS
            assert await durable.aio.list_events(handle.workflow_id, client=team_a) == {
                "where": "namespace"
            }
            with pytest.raises(durable.WorkflowNotFoundError):
                await durable.aio.get_workflow(handle.workflow_id, client=team_b)
            with pytest.raises(durable.UnauthenticatedError):
                await durable.aio.get_workflow(handle.workflow_id, client=stranger)

    asyncio.run(asyncio.wait_for(main(), timeout=60))
