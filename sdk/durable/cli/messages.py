"""`durable messages send`: send a workflow a JSON message."""

from __future__ import annotations

import argparse
import json
import uuid

from durable import _payloads
from durable._client import Client
from durable.cli.args import Parser, parse_json
from durable.cli.console import EXIT_OK, note, print_line
from durable.v1 import coordinator_pb2 as pb


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `messages` and its command to `durable`'s subcommands."""
    messages = groups.add_parser("messages", help="send a message to a workflow")
    message_commands = messages.add_subparsers(dest="command", metavar="COMMAND", required=True)
    send = message_commands.add_parser(
        "send",
        help="send a JSON message to a workflow (which need not have started yet)",
        description="Send a JSON message to a workflow; it waits there until the workflow "
        "receives it with durable.recv. With --idempotency-key, sending again with the same "
        "key delivers nothing.",
    )
    send.add_argument("workflow_id", metavar="ID")
    send.add_argument("message", metavar="JSON", type=parse_json, help="the message, as JSON")
    send.add_argument("--topic", default="", help="the topic (default: the default topic)")
    send.add_argument("--idempotency-key", metavar="KEY", help="deliver at most once per KEY")
    send.set_defaults(run=_send)
    send.add_argument("--json", action="store_true", help="print JSON")


def _send(args: argparse.Namespace, client: Client) -> int:
    # A key of our own when none is given, so the client's retries deliver once.
    key = args.idempotency_key or str(uuid.uuid4())
    request = pb.SendRequest(
        destination_workflow_id=args.workflow_id,
        topic=args.topic,
        message=_payloads.encode(args.message),
        idempotency_key=key,
    )
    sent = not client.send(request).already_sent
    if args.json:
        print_line(
            json.dumps({"workflow_id": args.workflow_id, "sent": sent, "idempotency_key": key})
        )
    elif sent:
        note(f"sent to {args.workflow_id!r}")
    else:
        note(f"not sent again: idempotency key {key!r} was used before for {args.workflow_id!r}")
    return EXIT_OK
