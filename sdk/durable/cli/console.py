"""What every `durable` command shares to talk to the shell: its exit statuses and how it
writes results (stdout) and notes (one line each on stderr)."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # a wait timed out, or ended without a value; nothing to delete
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

PROG = "durable"


def print_line(text: str) -> None:
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")


def print_json(value: Any) -> None:
    print_line(json.dumps(value, ensure_ascii=False, indent=2))
