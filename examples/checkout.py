"""Checkout: a workflow hands the caller a value (a payment URL) while it keeps running.

    python -m examples.checkout [--coordinator HOST:PORT] [--workflow-id ID]
                                [--order-id ID] [--step-seconds 0.5] [--timeout 60]

The workflow `checkout` creates a payment, publishes its URL as the "paymentURL" event,
then waits for the payment. The caller does not wait for the whole workflow to show the
URL: it reads the event as soon as it is set.

    workflow: checkout-order-3fa2...
    payment URL: https://pay.example/order-3fa2...
    result: success

The workflow ID defaults to "checkout-<order id>", so starting the checkout of the same
order twice (say, the user double-clicks) runs it once: the second start gets the first
one's workflow, its payment URL and its result.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import TypedDict

import durable


class Order(TypedDict):
    """Workflow inputs are recorded as JSON, so plain dicts (typed here) work well."""

    order_id: str
    amount_cents: int


@durable.step
def create_payment(order: Order) -> str:
    """Ask the (fake) payment provider for a payment page; returns its URL.

    As a step it runs once per workflow: a resumed checkout reuses the recorded URL
    rather than creating a second payment.
    """
    return f"https://pay.example/{order['order_id']}"


@durable.step
def wait_for_payment(payment_url: str, seconds: float) -> str:
    """Stand-in for waiting until the customer has paid at `payment_url`."""
    time.sleep(seconds)
    return "success"


# An explicit name keeps the workflow's identity stable however this file is run.
@durable.workflow(name="examples.checkout")
def checkout(order: Order, step_seconds: float = 0.5) -> str:
    url = create_payment(order)
    # Publish the URL now, while the workflow goes on to wait for the payment.
    durable.set_event("paymentURL", url)
    return wait_for_payment(url, step_seconds)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.checkout",
        description="Start a checkout workflow, print its payment URL, then its result.",
    )
    parser.add_argument(
        "--coordinator",
        metavar="ADDRESS",
        default=None,
        help="coordinator host:port (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--workflow-id",
        default=None,
        help="workflow ID (default: checkout-<order id>)",
    )
    parser.add_argument(
        "--order-id",
        default=None,
        help="order to check out (default: a new one)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=0.5,
        help="how long the payment takes (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="longest wait for the URL and the result, in seconds (default: %(default)s)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    client = durable.configure(args.coordinator)
    order = Order(order_id=args.order_id or f"order-{uuid.uuid4().hex}", amount_cents=4200)
    workflow_id = args.workflow_id or f"checkout-{order['order_id']}"
    try:
        with durable.set_workflow_id(workflow_id):
            handle = durable.start_workflow(checkout, order, args.step_seconds)
        print(f"workflow: {handle.workflow_id}", flush=True)

        # Blocks until the workflow sets "paymentURL" (None if the timeout passes first).
        url = durable.get_event(handle.workflow_id, "paymentURL", timeout=args.timeout)
        if url is None:
            print("no payment URL within the timeout", file=sys.stderr)
            return 1
        print(f"payment URL: {url}", flush=True)

        # Meanwhile the workflow waits for the payment; its return value is the outcome.
        print(f"result: {handle.result(timeout=args.timeout)}", flush=True)
    except durable.CoordinatorUnavailableError as exc:
        print(f"cannot reach the coordinator at {client.target}: {exc}", file=sys.stderr)
        return 2
    except durable.CoordinatorError as exc:
        # E.g. WorkflowConflictError: this ID was already used by another workflow.
        print(f"the coordinator refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
