"""`durable ui`'s command line: the subcommand `durable.ui.cli.add_parser` adds to the
`durable` parser, run as a real process against a real coordinator."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from durable import cli
from durable.ui.cli import DEFAULT_HOST, DEFAULT_PORT, add_parser
from durable.ui.connect import MAX_RETRY_SECONDS, async_client
from tests.support import ROOT, Coordinator, eventually, free_port, start_pending

# `durable` with the `ui` command, whether or not durable/cli.py adds it itself yet.
_MAIN = """
import argparse, sys
from durable import cli
from durable.ui.cli import add_parser
parser = cli.build_parser()
groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
if "ui" not in groups.choices:
    add_parser(groups)
args = parser.parse_args(sys.argv[1:])
sys.exit(args.run(args, None))
"""


def _parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "ui" not in groups.choices:
        add_parser(groups)
    return parser


def test_ui_takes_the_connection_options_of_durable() -> None:
    args = _parser().parse_args(
        ["--coordinator", "10.0.0.7:50051", "--token", "t0k", "--retry-seconds", "30", "ui"]
    )
    assert (args.listen, args.port, args.open) == (DEFAULT_HOST, DEFAULT_PORT, False)
    client = async_client(args)
    assert client.target == "10.0.0.7:50051"
    assert client.retry.total_seconds == MAX_RETRY_SECONDS  # a page does not hang 30 s


def _durable(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _MAIN, *argv],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def test_durable_ui_serves_the_list_until_interrupted(coordinator: Coordinator) -> None:
    workflow_id = start_pending(coordinator.stub)
    port = free_port()
    process = _durable("--coordinator", coordinator.address, "ui", "--port", str(port))
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert f"serving http://127.0.0.1:{port}" in line, line

        def page() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    return str(reply.read().decode())
            except OSError:
                return None

        assert workflow_id in eventually(page)
        # Another name for 127.0.0.1 (DNS rebinding) is not answered.
        rebound = urllib.request.Request(
            f"http://127.0.0.1:{port}/", headers={"Host": f"attacker.example:{port}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 400
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_durable_ui_on_a_port_in_use_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _durable("ui", "--port", str(port))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err
