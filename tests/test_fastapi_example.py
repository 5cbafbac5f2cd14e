"""examples/fastapi_checkout.py runs as a real uvicorn server against a real coordinator and
answers over real HTTP as examples/README.md says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator, eventually, free_port

# The longest a request (or the whole progress stream) may take.
HTTP_TIMEOUT = 30.0
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class Server:
    """`uvicorn examples.fastapi_checkout:app` as a subprocess on a free loopback port."""

    def __init__(self, coordinator: Coordinator, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_checkout:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DURABLE_COORDINATOR": coordinator.address},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def wait_until_answering(self) -> None:
        """Uvicorn binds its port only after the lifespan (the worker's start) is done."""

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the app exited ({self.process.returncode}):\n{self.log()}")
            try:
                return httpx.get(f"{self.base_url}/openapi.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(answers, timeout=STARTUP_TIMEOUT, interval=0.1)

    def stop(self) -> int:
        """SIGTERM (uvicorn runs the lifespan's shutdown: the worker stops) and the exit
        code; killed if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()
        return self.process.returncode


@contextmanager
def running_app(coordinator: Coordinator, log_path: Path) -> Iterator[Server]:
    """The app, answering; stopped on exit, which must be a graceful shutdown."""
    app = Server(coordinator, log_path)
    try:
        app.wait_until_answering()
        yield app
    finally:
        code = app.stop()
    # Uvicorn shuts down gracefully on SIGTERM, then exits by that signal.
    assert code in (0, -signal.SIGTERM), f"exit {code}:\n{app.log()}"
    assert "Application shutdown complete." in app.log()


@pytest.fixture(scope="module")
def server(coordinator: Coordinator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(coordinator, tmp_path_factory.mktemp("fastapi") / "uvicorn.log") as app:
        yield app


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        yield client


def new_order_id() -> str:
    return f"order-{uuid.uuid4().hex}"


def checkout(http: httpx.Client, order_id: str) -> dict[str, Any]:
    reply = http.post("/checkout", json={"order_id": order_id})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def pay(http: httpx.Client, workflow_id: str, status: str = "paid") -> None:
    reply = http.post(f"/orders/{workflow_id}/payment", json={"status": status})
    assert reply.status_code == 202, reply.text


def read_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """The (event type, decoded data) of each Server-Sent Event, as they arrive."""
    event, data = "message", ""
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")


def test_checkout_goes_on_after_the_app_restarts(coordinator: Coordinator, tmp_path: Path) -> None:
    """A checkout waiting for its payment when the app stops is continued by the worker of
    the restarted app (once the stopped one's lease lapses), from its recorded steps.

    First in this module, so that no other app (the `server` fixture's) serves it."""
    order_id = new_order_id()
    with (
        running_app(coordinator, tmp_path / "first.log") as first,
        httpx.Client(base_url=first.base_url, timeout=HTTP_TIMEOUT) as http,
    ):
        started = checkout(http, order_id)
    workflow_id = started["workflow_id"]

    with (
        running_app(coordinator, tmp_path / "second.log") as second,
        httpx.Client(base_url=second.base_url, timeout=HTTP_TIMEOUT) as http,
    ):
        # Paid while no process runs the workflow: the message waits for it.
        pay(http, workflow_id)
        with http.stream("GET", f"/progress/{workflow_id}") as response:
            events = list(read_events(response))
        assert events == [
            ("progress", 50),
            ("progress", 75),
            ("progress", 100),
            ("end", {"status": "SUCCESS", "result": "paid"}),
        ]
        assert checkout(http, order_id) == started  # the same payment, not a new one

    reply = coordinator.stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=10)
    assert reply.workflow.recovery_attempts == 1  # claimed by the second app's worker


def test_checkout_returns_payment_url_and_progress_streams_to_the_end(http: httpx.Client) -> None:
    order_id = new_order_id()
    started = checkout(http, order_id)
    workflow_id = f"checkout-{order_id}"
    assert started == {
        "workflow_id": workflow_id,
        "payment_url": f"https://pay.example/{order_id}",
    }

    seen: list[tuple[str, Any]] = []
    with http.stream("GET", f"/progress/{workflow_id}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in read_events(response):
            seen.append(event)
            if event == ("progress", 50):
                # The workflow waits for the payment: only the callback moves it on.
                assert http.get(f"/orders/{workflow_id}").json()["status"] == "PENDING"
                pay(http, workflow_id)
    # The URL was published at 50, so a stream opened after the POST starts there; it
    # ends by itself once the workflow finishes.
    assert seen == [
        ("progress", 50),
        ("progress", 75),
        ("progress", 100),
        ("end", {"status": "SUCCESS", "result": "paid"}),
    ]

    order = http.get(f"/orders/{workflow_id}").json()
    assert order == {
        "workflow_id": workflow_id,
        "status": "SUCCESS",
        "result": "paid",
        "error": None,
        "progress": 100,
        "payment_url": f"https://pay.example/{order_id}",
    }


def test_checkout_of_the_same_order_again_returns_the_same_workflow(http: httpx.Client) -> None:
    order_id = new_order_id()
    first = checkout(http, order_id)
    again = checkout(http, order_id)  # while the first still waits for the payment
    assert again == first

    workflow_id = first["workflow_id"]
    pay(http, workflow_id)
    pay(http, workflow_id)  # a repeated callback delivers nothing new
    with http.stream("GET", f"/progress/{workflow_id}") as response:
        events = list(read_events(response))
    assert events[-2:] == [("progress", 100), ("end", {"status": "SUCCESS", "result": "paid"})]

    # Finished, the order still answers with its workflow and URL, and does not run again.
    assert checkout(http, order_id) == first
    assert http.get(f"/orders/{workflow_id}").json()["result"] == "paid"


def test_declined_payment_releases_the_order(http: httpx.Client) -> None:
    started = checkout(http, new_order_id())
    pay(http, started["workflow_id"], "declined")
    with http.stream("GET", f"/progress/{started['workflow_id']}") as response:
        events = list(read_events(response))
    assert events[-1] == ("end", {"status": "SUCCESS", "result": "declined"})


def test_checkout_without_order_id_makes_one(http: httpx.Client) -> None:
    first = http.post("/checkout").json()
    second = http.post("/checkout", json={}).json()
    assert first["workflow_id"].startswith("checkout-order-")
    assert second["workflow_id"] != first["workflow_id"]
    assert first["payment_url"].startswith("https://pay.example/order-")


def test_unknown_workflow_and_bad_order_id_are_client_errors(http: httpx.Client) -> None:
    missing = f"checkout-{new_order_id()}"
    for reply in (
        http.get(f"/progress/{missing}"),
        http.get(f"/orders/{missing}"),
        http.post(f"/orders/{missing}/payment", json={"status": "paid"}),
    ):
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"] == "workflow_not_found"
    assert http.post("/checkout", json={"order_id": "no spaces"}).status_code == 422
