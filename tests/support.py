"""Test helpers: real coordinator processes, fresh databases, bounded waits, and the small
gRPC and Postgres helpers the coordinator tests share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

Stub = pb_grpc.CoordinatorServiceStub

# The deadline of every call that is not itself a timed wait.
RPC_TIMEOUT = 10.0
# How long a woken reader or waiter may take to answer.
PROMPT = 5.0
# Text of the coordinator's workflow read (coordinator/store/workflows.py). AwaitWorkflow
# arms its wake-up before this read, so once a session shows it finished the call is parked.
WORKFLOW_READ_SQL = "FROM durable.workflows WHERE workflow_id ="
# Text of the check a checkpointed wait (Recv, GetEvent from a workflow) makes when it found
# nothing, right before it parks (coordinator/store/waits.py _SETTLED): once a session
# shows it finished, the wait is parked and anything sent or set from then on must wake it.
WAIT_PARKED_SQL = "OR NOT EXISTS (SELECT 1 FROM durable.workflows"


def eventually(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Return check()'s first truthy result; fail if none comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_database(server_url: str) -> str:
    """Create an empty database on the server; returns its URL."""
    name = f"durable_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, database_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


class LineProcess:
    """A test's helper program (`python -m MODULE ...`): its stdout lines collected as they
    come, its stderr in a file (a full pipe would block it), waits on a line bounded."""

    def __init__(self, name: str, argv: list[str], stderr_path: Path, *, stdin: int) -> None:
        self.name = name
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def on_line(self, line: str) -> None:
        """Called by the reader thread for each stdout line, after it is stored."""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.strip()
            self.lines.append(line)
            self.on_line(line)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _line(self, prefix: str, timeout: float, interval: float = 0.02) -> str:
        """The first stdout line starting with `prefix`, once printed; fails at once if the
        program exited without printing it."""

        def found() -> str | None:
            # The line first: a program may print it and exit before this looks.
            line = next((line for line in self.lines if line.startswith(prefix)), None)
            if line is None and self.process.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"{self.name} exited:\n{self.stderr()[-5000:]}")
            return line

        return eventually(found, timeout=timeout, interval=interval)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test stopped it
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self._reader.join(timeout=5)
        self._stderr.close()


class Coordinator:
    """A coordinator running as a real subprocess on a loopback port."""

    def __init__(
        self,
        database_url: str,
        *extra_args: str,
        port: int | None = None,
        address: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`port`: listen on this loopback port (e.g. a stopped coordinator's) instead of a
        free one; `address`: listen on (and connect to) this instead, e.g. "unix:/path";
        `env`: extra environment variables for the process."""
        self.database_url = database_url
        self.port = port or free_port()
        self.address = address or f"127.0.0.1:{self.port}"
        self.log_path = Path(f"/tmp/durable-coordinator-{self.port}.log")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator",
                "--listen",
                self.address,
                "--database-url",
                database_url,
                *extra_args,
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.channel = grpc.insecure_channel(self.address)
        self.stub = Stub(self.channel)

    def wait_serving(self, timeout: float = 30.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)

        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"coordinator exited:\n{self.log_path.read_text()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        eventually(serving, timeout=timeout, interval=0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def running_coordinator(database_url: str, *extra_args: str) -> Iterator[Coordinator]:
    """A coordinator process that is SERVING for the body of the `with`, stopped after it."""
    process = Coordinator(database_url, *extra_args)
    try:
        process.wait_serving()
        yield process
    finally:
        process.stop()


# --- messages and errors -------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(address: str) -> Samples:
    """Every sample a coordinator's /metrics endpoint at `address` serves now."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=RPC_TIMEOUT) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def payload(value: Any) -> pb.Payload:
    return pb.Payload(encoding="json", data=json.dumps(value).encode())


def value_of(message: pb.Payload) -> Any:
    return json.loads(message.data)


def duration(seconds: float) -> Duration:
    result = Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result


def new_id(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def error_info(err: grpc.RpcError) -> Any:
    """The google.rpc.ErrorInfo detail of a failed call."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no status details on {err!r}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo detail on {err!r}")


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- calls ---------------------------------------------------------------------------------


def start_pending(stub: Stub, workflow_id: str | None = None, name: str = "test.flow") -> str:
    """Start a PENDING workflow with an SDK-shaped empty input; returns its ID."""
    workflow_id = workflow_id or new_id(name.split(".")[0])
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id, name=name, input=payload({"args": [], "kwargs": {}})
        ),
        timeout=RPC_TIMEOUT,
    )
    return workflow_id


def set_event(
    stub: Stub, workflow_id: str, step_id: int, key: str, value: Any
) -> pb.SetEventResponse:
    return stub.SetEvent(
        pb.SetEventRequest(workflow_id=workflow_id, step_id=step_id, key=key, value=payload(value)),
        timeout=RPC_TIMEOUT,
    )


def finish(stub: Stub, workflow_id: str, output: Any = "done") -> pb.FinishWorkflowResponse:
    return stub.FinishWorkflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload(output)),
        timeout=RPC_TIMEOUT,
    )


# --- server-side state ---------------------------------------------------------------------


class Activity:
    """Watches the coordinators' sessions in pg_stat_activity, to wait on server-side state
    (a reader or waiter has parked, a statement waits on a lock) instead of sleeping."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def now(self) -> datetime:
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value

    def finished_queries(self, sql: str, since: datetime) -> int:
        """Sessions whose last statement contains `sql`, started after `since`, and is done."""
        row = self.conn.execute(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND state = 'idle' AND query_start >= %s AND strpos(query, %s) > 0""",
            (since, sql),
        ).fetchone()
        assert row is not None
        count: int = row[0]
        return count

    def wait_parked(self, since: datetime, sql: str, count: int = 1) -> None:
        """Wait until `count` runs of a statement containing `sql`, started after `since`,
        have finished: the callers that armed a wake-up before that read are now waiting.

        pg_stat_activity shows only a session's last statement, and a coordinator's pool
        may soon reuse a parked caller's connection (its sweep, its health probe, another
        caller), hiding that run: so every run seen, by (session, start), is remembered."""
        seen: set[tuple[int, datetime]] = set()

        def parked() -> bool:
            seen.update(self._finished_runs(sql, since))
            return len(seen) >= count

        eventually(parked, timeout=PROMPT, interval=0.005)

    def _finished_runs(self, sql: str, since: datetime) -> list[tuple[int, datetime]]:
        rows = self.conn.execute(
            """SELECT pid, query_start FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND state = 'idle' AND query_start >= %s AND strpos(query, %s) > 0""",
            (since, sql),
        ).fetchall()
        return [(pid, started) for pid, started in rows]

    def lock_waiters(self) -> int:
        row = self.conn.execute(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        ).fetchone()
        assert row is not None
        count: int = row[0]
        return count

    def listen_sessions(self) -> list[int]:
        found = self.conn.execute(
            """SELECT pid FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND query LIKE 'LISTEN %'"""
        ).fetchall()
        return [row[0] for row in found]

    def terminate(self, pids: list[int]) -> None:
        for pid in pids:
            self.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    def close(self) -> None:
        self.conn.close()


# --- an unreliable network ----------------------------------------------------------------


class PostgresProxy:
    """A TCP proxy on 127.0.0.1 in front of the Postgres server of `database_url` (a TCP
    host:port, or a unix socket directory as the embedded Postgres uses), to make the
    database unreachable on demand: `cut()` drops every connection and refuses new ones,
    `stall()` keeps connections open but passes no byte (a network that drops packets, or
    a database that hangs), `resume()` undoes either, on the same port. `url` reaches the
    database through it."""

    def __init__(self, database_url: str) -> None:
        params = conninfo_to_dict(database_url)
        host = str(params.pop("host", "") or "").split(",")[0]
        port = int(str(params.pop("port", "") or "5432").split(",")[0])
        params.pop("hostaddr", None)
        if not host:
            raise ValueError(f"no host in {database_url!r}")
        self._upstream_host = host
        self._upstream_port = port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self.port = 0
        self.resume()
        self.url = make_conninfo("", host="127.0.0.1", port=str(self.port), **params)

    def resume(self) -> None:
        """Pass bytes again and accept connections (again), on the same port as before."""
        self._flowing.set()
        if self._listener is not None:
            return  # it was only stalled
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._start(self._accept, listener)

    def cut(self) -> None:
        """Drop every connection through the proxy and refuse new ones until `resume()`."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets = [*self._open, *([listener] if listener is not None else [])]
        for sock in sockets:
            # Wakes the threads blocked on them; each closes its own sockets on the way out.
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._flowing.set()  # a stalled pipe thread now fails to send, and ends
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)
            assert not thread.is_alive(), "proxy thread did not stop"

    def stall(self) -> None:
        """Hold every byte in either direction until `resume()` (or `cut()`)."""
        self._flowing.clear()

    def close(self) -> None:
        self.cut()

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _connect_upstream(self) -> socket.socket:
        if self._upstream_host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(f"{self._upstream_host}/.s.PGSQL.{self._upstream_port}")
            except OSError:
                upstream.close()
                raise
            return upstream
        return socket.create_connection((self._upstream_host, self._upstream_port), timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        try:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return  # cut
                try:
                    upstream = self._connect_upstream()
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    if self._listener is not listener:  # cut meanwhile
                        client.close()
                        upstream.close()
                        return
                    self._open.update((client, upstream))
                self._start(self._pipe, client, upstream)
                self._start(self._pipe, upstream, client)
        finally:
            listener.close()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the other too, as a dropped connection would.
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                last = source not in self._open  # the other direction has ended already
                self._open.difference_update((source, sink))
            if last:
                source.close()
                sink.close()
