"""Checkout behind a web API: FastAPI in front, an `async def` durable workflow behind it.

    make run                                           # a coordinator, in one shell
    .venv/bin/uvicorn examples.fastapi_checkout:app    # this app, in another

The endpoints (examples/README.md has curl commands for each):

    POST /checkout                      start (or find) the checkout of an order; answers
                                        {"workflow_id", "payment_url"} once the URL is set
    GET  /progress/{workflow_id}        the progress as Server-Sent Events, live, until the
                                        workflow finishes
    GET  /orders/{workflow_id}          status, result, progress and payment URL
    POST /orders/{workflow_id}/payment  the payment provider's callback: paid or declined

The workflow reserves stock, creates a payment and publishes its URL as the "paymentURL"
event, then waits (durably, for up to PAYMENT_WINDOW_SECONDS) for the provider's callback,
which arrives as a message. It publishes "progress" (0, 25, 50, 75, 100) as it goes.

The app's lifespan runs a `durable.aio.Worker` serving the workflow. Checkouts started by
a request run under that worker's session in this process; if the process dies, the
worker of the restarted app (or of another replica) claims them once the lease lapses and
continues each from its last recorded step: a reserved order is not reserved twice.

Configuration, from the environment: DURABLE_COORDINATOR (default 127.0.0.1:50051),
PAYMENT_URL_TIMEOUT_SECONDS (10), PAYMENT_WINDOW_SECONDS (900),
PROGRESS_STREAM_SECONDS (3600).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

import durable
import durable.aio


@dataclass(frozen=True)
class Settings:
    """The app's configuration, read once from the environment."""

    coordinator: str
    payment_url_timeout: float
    payment_window: float
    progress_stream: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            coordinator=os.environ.get("DURABLE_COORDINATOR", "127.0.0.1:50051"),
            payment_url_timeout=float(os.environ.get("PAYMENT_URL_TIMEOUT_SECONDS", "10")),
            payment_window=float(os.environ.get("PAYMENT_WINDOW_SECONDS", "900")),
            progress_stream=float(os.environ.get("PROGRESS_STREAM_SECONDS", "3600")),
        )


# --- the workflow -------------------------------------------------------------------------


class Order(TypedDict):
    """Workflow inputs are recorded as JSON, so plain dicts (typed here) work well."""

    order_id: str
    amount_cents: int


@durable.step
async def reserve_stock(order: Order) -> str:
    """Stand-in for the inventory service: returns a reservation ID. As a step it runs
    once per checkout: a resumed workflow reuses the recorded reservation."""
    return f"reservation-{order['order_id']}"


@durable.step
async def create_payment(order: Order) -> str:
    """Stand-in for the payment provider: returns the URL of a payment page."""
    return f"https://pay.example/{order['order_id']}"


@durable.step
async def release_stock(reservation: str) -> None:
    """Give the reserved stock back (the order was not paid)."""


@durable.step
async def ship(order: Order, reservation: str) -> str:
    """Stand-in for the warehouse: returns a shipment ID."""
    return f"shipment-{order['order_id']}"


# An explicit name keeps the workflow's identity stable however this file is imported.
@durable.workflow(name="examples.fastapi_checkout")
async def checkout(order: Order, payment_window: float) -> str:
    await durable.aio.set_event("progress", 0)
    reservation = await reserve_stock(order)
    await durable.aio.set_event("progress", 25)
    url = await create_payment(order)
    await durable.aio.set_event("progress", 50)
    # The request that started the checkout is waiting for this event to answer.
    await durable.aio.set_event("paymentURL", url)

    # The provider's callback arrives as a message (POST /orders/{id}/payment). The wait is
    # recorded: after a restart it goes on for what is left of the window, not a new one.
    payment = await durable.aio.recv("payment", timeout=payment_window)
    if payment is None or payment.get("status") != "paid":
        await release_stock(reservation)
        await durable.aio.set_event("progress", 100)
        return "expired" if payment is None else "declined"
    await durable.aio.set_event("progress", 75)
    await ship(order, reservation)
    await durable.aio.set_event("progress", 100)
    return "paid"


def workflow_id_for(order_id: str) -> str:
    """One workflow per order: starting the checkout of an order again (a retried request,
    a double click) finds the first one rather than running a second."""
    return f"checkout-{order_id}"


# --- the web API --------------------------------------------------------------------------


class CheckoutRequest(BaseModel):
    # The workflow ID is made from it, so it keeps to a safe alphabet.
    order_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    amount_cents: int = Field(default=4200, gt=0)


class CheckoutResponse(BaseModel):
    workflow_id: str
    payment_url: str


class PaymentCallback(BaseModel):
    status: Literal["paid", "declined"] = "paid"


def error(status_code: int, code: str, message: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **fields}, status_code=status_code)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event: its type and a JSON value."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, configured from `settings` (default: the environment)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Uvicorn sets up its own loggers only; this shows the SDK's (claims, recoveries).
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
        durable.aio.configure(settings.coordinator)
        worker = durable.aio.Worker([checkout], name=f"fastapi-checkout-{os.getpid()}")
        await worker.start()  # raises if the coordinator cannot be reached
        try:
            yield
        finally:
            # Let running workflows go on briefly; the rest are continued by other workers.
            await worker.stop(timeout=5)

    app = FastAPI(title="Durable checkout", lifespan=lifespan)

    @app.exception_handler(durable.WorkflowNotFoundError)
    async def not_found(request: Request, exc: durable.WorkflowNotFoundError) -> JSONResponse:
        return error(404, "workflow_not_found", str(exc))

    @app.exception_handler(durable.CoordinatorUnavailableError)
    async def unavailable(
        request: Request, exc: durable.CoordinatorUnavailableError
    ) -> JSONResponse:
        return error(503, "coordinator_unavailable", str(exc))

    @app.post("/checkout", response_model=CheckoutResponse)
    async def start_checkout(body: CheckoutRequest | None = None) -> Any:
        body = body or CheckoutRequest()
        order = Order(
            order_id=body.order_id or f"order-{uuid.uuid4().hex}", amount_cents=body.amount_cents
        )
        try:
            with durable.aio.set_workflow_id(workflow_id_for(order["order_id"])):
                handle = await durable.aio.start_workflow(checkout, order, settings.payment_window)
        except durable.WorkflowConflictError as exc:
            return error(409, "workflow_id_taken", str(exc))
        workflow_id = handle.workflow_id
        url = await durable.aio.get_event(
            workflow_id, "paymentURL", timeout=settings.payment_url_timeout
        )
        if url is None:
            # The checkout goes on: the client can ask again (same order) or poll the order.
            return error(
                504,
                "payment_url_timeout",
                f"no payment URL within {settings.payment_url_timeout:g}s",
                workflow_id=workflow_id,
            )
        return CheckoutResponse(workflow_id=workflow_id, payment_url=url)

    @app.get("/progress/{workflow_id}")
    async def progress(workflow_id: str) -> StreamingResponse:
        await durable.aio.get_workflow(workflow_id)  # 404 for an unknown ID, before streaming

        async def events() -> AsyncIterator[bytes]:
            # The current value first, then each new one; the loop ends when the workflow
            # finishes (or the stream's time is up). A client that disconnects cancels it.
            async for value in durable.aio.watch_event(
                workflow_id, "progress", timeout=settings.progress_stream
            ):
                yield sse("progress", value)
            info = await durable.aio.get_workflow(workflow_id)
            # Tells an EventSource not to reconnect (unless the workflow still runs).
            yield sse("end", {"status": info.status.value, "result": info.output})

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/orders/{workflow_id}")
    async def order_status(workflow_id: str) -> dict[str, Any]:
        info = await durable.aio.get_workflow(workflow_id)
        events = await durable.aio.list_events(workflow_id)
        return {
            "workflow_id": workflow_id,
            "status": info.status.value,
            "result": info.output,
            "error": info.error.message if info.error else None,
            "progress": events.get("progress"),
            "payment_url": events.get("paymentURL"),
        }

    @app.post("/orders/{workflow_id}/payment", status_code=202)
    async def payment_callback(workflow_id: str, body: PaymentCallback) -> dict[str, str]:
        await durable.aio.get_workflow(workflow_id)  # 404 for an unknown ID
        # Providers retry callbacks: the idempotency key makes a repeat deliver nothing new.
        await durable.aio.send(
            workflow_id,
            {"status": body.status},
            topic="payment",
            idempotency_key=f"{workflow_id}/payment",
        )
        return {"workflow_id": workflow_id, "payment": body.status}

    return app


app = create_app()
