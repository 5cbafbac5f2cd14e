"""`durable`: inspect and manage workflows, and read their events, from a shell.

    durable [--coordinator ADDRESS] [--token TOKEN] [--tls-ca PATH ...] COMMAND ...

    durable workflows list [--status STATUS ...] [--name NAME] [--version VERSION]
                           [--since WHEN] [--limit N]
    durable workflows show ID
    durable workflows cancel ID
    durable workflows resume ID
    durable workflows fork ID --from-step N [--new-id NEW] [--version VERSION]
    durable workflows cancel-all | resume-all [FILTERS] [--all] [--dry-run] [--yes]
    durable workflows delete ID [--children] [--yes]
    durable schedules list [--workflow NAME]
    durable schedules show NAME
    durable schedules pause NAME | resume NAME | delete NAME | trigger NAME
    durable events get ID KEY [--timeout SECONDS]
    durable events watch ID KEY [--timeout SECONDS]
    durable messages send ID JSON [--topic TOPIC] [--idempotency-key KEY]
    durable queues show NAME [--max-partitions N]
    durable queues pause NAME | resume NAME
    durable retention get | set DURATION | set --clear

Every command takes `--json` for machine-readable output. Exit status: 0 on success, 1 when
a wait ended without what it waited for (a timeout, or a workflow that finished without
setting the key) or there was no schedule to delete, 2 on an error (an unknown workflow or
schedule, an unreachable coordinator, bad input), reported as one line on stderr.

This module builds the top-level parser (the connection options) and runs a command. The
rest is split by concern: `args` (the parser class and argument types), `console` (exit
statuses, stdout and stderr), `formatting` (how results look), and one module per command
group (`workflows`, `schedules`, `events`, `messages`) whose `add_parser(groups)` adds the
group and its commands. `durable ui` is added by `durable.ui.cli`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from durable._client import Client
from durable._connection import TLS
from durable._retry import RetryPolicy
from durable.cli import events, messages, queues, retention, schedules, workflows
from durable.cli.args import Parser, non_negative, parse_since
from durable.cli.console import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    PROG,
    note,
)
from durable.cli.formatting import (
    EventPrinter,
    event_line,
    local_time,
    plain,
    progress_bar,
    schedule_json,
    schedule_lines,
    schedule_rows,
    schedule_state,
    show_lines,
    step_json,
    table,
    to_json,
    workflow_json,
)
from durable.errors import (
    CoordinatorUnavailableError,
    DurableError,
    UnauthenticatedError,
)
from durable.ui.cli import add_parser as add_ui_parser

# Importable from `durable.cli` as before the package was split (tests, durable.ui).
__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "PROG",
    "EventPrinter",
    "build_parser",
    "event_line",
    "local_time",
    "main",
    "parse_since",
    "plain",
    "progress_bar",
    "schedule_json",
    "schedule_lines",
    "schedule_rows",
    "schedule_state",
    "show_lines",
    "step_json",
    "table",
    "to_json",
    "workflow_json",
]

DEFAULT_RETRY_SECONDS = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Inspect and manage durable workflows and read their events.",
        epilog="Exit status: 0 success, 1 a wait ended without a value (timeout) or nothing "
        "was there to delete, 2 an error.",
    )
    parser.add_argument(
        "--coordinator",
        metavar="ADDRESS",
        default=os.environ.get("DURABLE_COORDINATOR") or None,
        help="coordinator host:port or unix:/path (default: $DURABLE_COORDINATOR or "
        "127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("DURABLE_TOKEN") or None,
        help="bearer token (default: $DURABLE_TOKEN)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PATH",
        help="connect with TLS, verifying the coordinator with this CA certificate (PEM) "
        "(default: $DURABLE_TLS_CA and the other DURABLE_TLS_* variables)",
    )
    parser.add_argument("--tls-client-cert", metavar="PATH", help="client certificate (PEM)")
    parser.add_argument("--tls-client-key", metavar="PATH", help="client private key (PEM)")
    parser.add_argument(
        "--tls-server-name", metavar="NAME", help="name to verify the coordinator's certificate"
    )
    parser.add_argument(
        "--retry-seconds",
        type=non_negative(float),
        default=DEFAULT_RETRY_SECONDS,
        metavar="SECONDS",
        help="keep retrying while the coordinator is unavailable for this long "
        f"(default: {DEFAULT_RETRY_SECONDS:g}; 0: fail at once)",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    workflows.add_parser(groups)
    schedules.add_parser(groups)
    events.add_parser(groups)
    messages.add_parser(groups)
    queues.add_parser(groups)
    retention.add_parser(groups)
    add_ui_parser(groups)  # `durable ui` (the `ui` extra's web stack loads only when run)
    return parser


def _client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls_ca or args.tls_client_cert or args.tls_client_key or args.tls_server_name:
        tls = TLS.from_files(
            args.tls_ca, args.tls_client_cert, args.tls_client_key, args.tls_server_name
        )
    return Client(
        args.coordinator,
        token=args.token,
        tls=tls,
        retry=RetryPolicy(total_seconds=args.retry_seconds),
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        client = _client(args)
    except OSError as exc:
        note(f"cannot read a TLS file: {_one_line(exc)}")
        return EXIT_ERROR
    try:
        code: int = args.run(args, client)
        return code
    except CoordinatorUnavailableError as exc:
        note(f"coordinator {client.target} is unavailable: {_one_line(exc)}")
    except UnauthenticatedError as exc:
        note(f"not authenticated (check --token): {_one_line(exc)}")
    except DurableError as exc:
        note(_one_line(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a second error when
        # Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    finally:
        client.close()
    return EXIT_ERROR
