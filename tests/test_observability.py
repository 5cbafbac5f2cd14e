"""Observability: Prometheus metrics, JSON logs that carry workflow IDs, OpenTelemetry spans."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import grpc
import psycopg
import pytest

from coordinator import logs
from coordinator.cli import parse_args
from durable.v1 import coordinator_pb2 as pb
from tests.support import (
    PROMPT,
    ROOT,
    RPC_TIMEOUT,
    Coordinator,
    Samples,
    create_database,
    drop_database,
    duration,
    eventually,
    free_port,
    new_id,
    payload,
    rpc_error,
    scrape_metrics,
    set_event,
)

# Markers that must never reach the log: a payload's content and a bearer token.
SECRET_PAYLOAD = "payload-marker-8c1f4e"
SECRET_TOKEN = "token-marker-52d9a0"
BEARER = (("authorization", f"Bearer {SECRET_TOKEN}"),)


class Observed(Coordinator):
    """A coordinator serving /metrics and logging JSON at DEBUG (so refused calls log too)."""

    def __init__(self, database_url: str) -> None:
        self.metrics_address = f"127.0.0.1:{free_port()}"
        super().__init__(
            database_url,
            "--metrics-listen",
            self.metrics_address,
            "--log-format",
            "json",
            "--log-level",
            "DEBUG",
        )

    def scrape(self) -> Samples:
        return scrape_metrics(self.metrics_address)

    def metric(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def observed(database_url: str) -> Iterator[Observed]:
    process = Observed(database_url)
    try:
        process.wait_serving()
        yield process
    finally:
        process.stop()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def start(stub: Any, workflow_id: str) -> None:
    stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name="observed"), timeout=RPC_TIMEOUT
    )


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of the log as a JSON object; fails on a line that is not one."""
    records = []
    for line in log.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    return records


# --- metrics -------------------------------------------------------------------------------


def test_rpcs_are_counted_by_method_and_code(observed: Observed) -> None:
    stub = observed.stub
    workflow_id = new_id()
    before = observed.scrape()
    start(stub, workflow_id)
    for _ in range(2):
        stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    invalid = rpc_error(
        lambda: stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=""), timeout=RPC_TIMEOUT)
    )
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = rpc_error(
        lambda: stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=new_id()), timeout=RPC_TIMEOUT)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    # A call is recorded before its answer is sent, so the counts are exact already.
    after = observed.scrape()

    rpcs = "durable_rpc_total"
    assert delta(before, after, rpcs, method="StartWorkflow", code="OK") == 1
    assert delta(before, after, rpcs, method="GetWorkflow", code="OK") == 2
    assert delta(before, after, rpcs, method="GetWorkflow", code="INVALID_ARGUMENT") == 1
    assert delta(before, after, rpcs, method="GetWorkflow", code="NOT_FOUND") == 1

    latency = "durable_rpc_duration_seconds"
    assert delta(before, after, f"{latency}_count", method="GetWorkflow") == 4
    assert delta(before, after, f"{latency}_bucket", method="GetWorkflow", le="+Inf") == 4
    assert delta(before, after, f"{latency}_sum", method="GetWorkflow") > 0
    # Loopback calls on an idle coordinator land in the lower buckets.
    assert delta(before, after, f"{latency}_bucket", method="GetWorkflow", le="5.0") == 4


def test_a_call_cut_by_its_deadline_counts_as_deadline_exceeded(observed: Observed) -> None:
    stub = observed.stub
    workflow_id = new_id()
    start(stub, workflow_id)
    before = observed.scrape()
    expired = rpc_error(
        lambda: stub.AwaitWorkflow(
            pb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout=duration(30)), timeout=0.3
        )
    )
    assert expired.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def counted() -> Samples | None:
        after = observed.scrape()
        done = delta(
            before, after, "durable_rpc_total", method="AwaitWorkflow", code="DEADLINE_EXCEEDED"
        )
        return after if done == 1 else None

    after = eventually(counted, timeout=PROMPT)
    assert delta(before, after, "durable_rpc_duration_seconds_sum", method="AwaitWorkflow") >= 0.3


def test_open_streams_gauge_follows_get_event_streams(observed: Observed) -> None:
    stub = observed.stub
    workflow_id = new_id()
    start(stub, workflow_id)
    before = observed.scrape()
    assert value(before, "durable_open_streams", method="GetEvent") == 0

    request = pb.GetEventRequest(workflow_id=workflow_id, key="progress", timeout=duration(30))
    stream = stub.GetEvent(request, timeout=RPC_TIMEOUT)
    eventually(lambda: observed.metric("durable_open_streams", method="GetEvent") == 1)
    assert observed.metric("durable_hub_waiters") >= 1

    # A value ends the (non-following) stream; the gauge goes back down.
    set_event(stub, workflow_id, 1, "progress", 50)
    replies = list(stream)
    assert [reply.WhichOneof("outcome") for reply in replies] == ["event"]
    eventually(lambda: observed.metric("durable_open_streams", method="GetEvent") == 0)
    after = observed.scrape()
    assert delta(before, after, "durable_rpc_total", method="GetEvent", code="OK") == 1
    assert delta(before, after, "durable_rpc_duration_seconds_count", method="GetEvent") == 1

    # A stream the client cancels is counted as CANCELLED, and is no longer open.
    following = stub.GetEvent(
        pb.GetEventRequest(
            workflow_id=workflow_id,
            key="progress",
            follow=True,
            after_version=1,
            timeout=duration(30),
        ),
        timeout=RPC_TIMEOUT,
    )
    eventually(lambda: observed.metric("durable_open_streams", method="GetEvent") == 1)
    following.cancel()
    eventually(lambda: observed.metric("durable_open_streams", method="GetEvent") == 0)
    eventually(
        lambda: (
            delta(
                before, observed.scrape(), "durable_rpc_total", method="GetEvent", code="CANCELLED"
            )
            == 1
        )
    )


def test_pool_and_listen_state_are_exported(observed: Observed) -> None:
    samples = observed.scrape()
    assert value(samples, "durable_listen_connected") == 1
    assert value(samples, "durable_db_pool_max") == 10
    size = value(samples, "durable_db_pool_size")
    assert 1 <= size <= 10
    assert 0 <= value(samples, "durable_db_pool_available") <= size
    assert value(samples, "durable_db_pool_requests_waiting") == 0
    assert ("durable_hub_waiters", frozenset()) in samples


# --- logs ----------------------------------------------------------------------------------


def _terminate_pool_connections(database_url: str) -> None:
    """End the coordinator's pooled database sessions (not its LISTEN one), and wait until
    they are gone: the next call on one of them fails as if the database had dropped it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend' AND query NOT LIKE 'LISTEN %'"""
        )


def test_json_logs_carry_the_workflow_id_and_no_payload(
    observed: Observed, database_url: str
) -> None:
    stub = observed.stub
    workflow_id = new_id()
    start(stub, workflow_id)

    # A refused call (logged at DEBUG).
    refused = rpc_error(
        lambda: stub.SetEvent(
            pb.SetEventRequest(
                workflow_id=workflow_id, step_id=1, key="", value=payload(SECRET_PAYLOAD)
            ),
            timeout=RPC_TIMEOUT,
            metadata=BEARER,
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A call the database fails (logged as a WARNING). The health probe may take a dead
    # connection first, so end the sessions again until a call meets one.
    def unavailable() -> bool:
        _terminate_pool_connections(database_url)
        request = pb.SetEventRequest(
            workflow_id=workflow_id, step_id=2, key="k", value=payload(SECRET_PAYLOAD)
        )
        try:
            stub.SetEvent(request, timeout=RPC_TIMEOUT, metadata=BEARER)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            return True
        return False

    eventually(unavailable, timeout=PROMPT)

    def logged() -> tuple[dict[str, Any], dict[str, Any]] | None:
        mine = [r for r in json_lines(observed.log()) if r.get("workflow_id") == workflow_id]
        refused = [r for r in mine if r["message"] == "SetEvent refused: INVALID_ARGUMENT"]
        failed = [r for r in mine if r["message"].startswith("SetEvent: database unavailable")]
        return (refused[0], failed[0]) if refused and failed else None

    refused_line, unavailable_line = eventually(logged, timeout=PROMPT)
    assert refused_line["level"] == "DEBUG"
    assert unavailable_line["level"] == "WARNING"
    log = observed.log()
    assert SECRET_PAYLOAD not in log
    assert SECRET_TOKEN not in log
    # Every line, from every logger, is one JSON object.
    assert json_lines(log)


def test_log_formats_carry_the_workflow_id() -> None:
    record = logging.LogRecord(
        "coordinator.edge", logging.WARNING, __file__, 1, "a %s", ("b",), None
    )
    record.workflow_id = "wf-7"
    text = logs.formatter("text").format(record)
    assert text.endswith(" WARNING coordinator.edge: a b workflow_id=wf-7")
    line = logs.formatter("json").format(record)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": ANY,
        "level": "WARNING",
        "logger": "coordinator.edge",
        "message": "a b",
        "workflow_id": "wf-7",
    }


# --- OpenTelemetry -------------------------------------------------------------------------


@pytest.fixture
def own_database(postgres_url: str) -> Iterator[str]:
    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)


def test_otel_console_exporter_prints_a_span_per_rpc(own_database: str) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    process = Coordinator(own_database, "--otel", env=env)
    try:
        process.wait_serving()
        workflow_id = new_id()
        start(process.stub, workflow_id)
        process.stub.GetWorkflow(
            pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT, metadata=BEARER
        )
        eventually(
            lambda: '"name": "/durable.v1.CoordinatorService/GetWorkflow"' in process.log(),
            timeout=PROMPT,
        )
        log = process.log()
        assert '"name": "/durable.v1.CoordinatorService/StartWorkflow"' in log
        assert '"service.name": "durable-coordinator"' in log
        assert SECRET_TOKEN not in log
    finally:
        process.stop()


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_otel_without_the_packages_stops_at_start_up() -> None:
    # Importing a module set to None in sys.modules fails, as if it were not installed.
    program = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from coordinator.cli import main\n"
        "main(['--otel', '--database-url', 'postgresql://127.0.0.1:1/never'])\n"
    )
    result = _run_cli(program)
    assert result.returncode == 1, result.stderr
    assert "--otel needs the OpenTelemetry packages" in result.stderr
    assert "pip install 'durable-coordinator[otel]'" in result.stderr


def test_otel_with_an_unknown_exporter_stops_at_start_up() -> None:
    program = (
        "from coordinator.cli import main\n"
        "main(['--otel', '--database-url', 'postgresql://127.0.0.1:1/never'])\n"
    )
    result = _run_cli(program, env={**os.environ, "OTEL_TRACES_EXPORTER": "no-such-exporter"})
    assert result.returncode == 1, result.stderr
    assert "OTEL_TRACES_EXPORTER names 'no-such-exporter'" in result.stderr


def test_metrics_address_is_checked_when_parsing() -> None:
    assert parse_args(["--metrics-listen", "127.0.0.1:9464"]).metrics_listen == "127.0.0.1:9464"
    for bad in ("9464x", "localhost", "host:99999"):
        with pytest.raises(SystemExit):
            parse_args(["--metrics-listen", bad])
