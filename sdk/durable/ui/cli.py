"""`durable ui`: serve the dashboard. `durable.cli` adds this subcommand with
`add_parser`; the connection options are the top-level ones of `durable`.

    durable [--coordinator ADDRESS] [--token TOKEN] [--tls-ca PATH ...] ui
            [--listen HOST] [--port PORT] [--open]

This module imports nothing of the web stack until the command runs, so `durable` works
without the `ui` extra installed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8233
EXIT_ERROR = 2


def add_parser(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `ui` command to `durable`'s subcommands."""
    parser = groups.add_parser(
        "ui",
        help="serve a live web dashboard of the workflows",
        description="Serve a web dashboard of the coordinator's workflows: a list with "
        "filters and counts, each workflow's steps as a timeline, its events live, and "
        "cancel, resume and fork. It uses the connection options given before `ui`.",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST",
        default=DEFAULT_HOST,
        help=f"address to serve on (default: {DEFAULT_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.set_defaults(run=run)


def _note(message: str) -> None:
    print(f"durable ui: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, client: Any) -> int:
    """Serve until interrupted. `client` (the CLI's sync client) is not used: the
    dashboard makes its own async client from the same options."""
    try:
        from durable.ui.app import bind, serve
    except ImportError as error:
        _note(
            f"the dashboard needs the `ui` extra ({error.name} is missing): "
            "pip install 'durable-sdk[ui]' (or 'durable-coordinator[ui]')"
        )
        return EXIT_ERROR
    from durable.ui.connect import async_client

    try:
        ui_client = async_client(args)
    except OSError as error:
        _note(f"cannot read a TLS file: {error}")
        return EXIT_ERROR
    try:
        sock = bind(args.listen, args.port)
    except OSError as error:
        _note(f"cannot listen on {args.listen}:{args.port}: {error.strerror or error}")
        return EXIT_ERROR
    return serve(ui_client, sock, open_browser=args.open, announce=_note)
