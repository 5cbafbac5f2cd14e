"""Test helpers: real coordinator processes, fresh databases, bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import psycopg
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


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


class Coordinator:
    """A coordinator running as a real subprocess on a loopback port."""

    def __init__(self, database_url: str, *extra_args: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
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
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.CoordinatorServiceStub(self.channel)

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
