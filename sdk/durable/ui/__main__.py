"""`python -m durable.ui [--listen HOST] [--port PORT] [--open]`: `durable ui`, with the
coordinator, token and TLS taken from the DURABLE_* environment variables (`make ui`)."""

from __future__ import annotations

import argparse
import sys

from durable import cli
from durable.ui.cli import add_parser


def main(argv: list[str]) -> int:
    parser = cli.build_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "ui" in groups.choices:  # durable.cli has the command: run it as `durable ui` does
        return cli.main(["ui", *argv])
    add_parser(groups)
    args = parser.parse_args(["ui", *argv])
    code: int = args.run(args, None)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
