"""Test helpers for the dashboard: the app served by uvicorn in a thread on a free port,
and a real browser (Debian's chromium through playwright, never a downloaded one)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable.aio import AsyncClient
from durable.ui.app import bind, server, url_of
from tests.support import eventually

# Playwright must never fetch a browser of its own.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = os.environ.get("DURABLE_UI_CHROMIUM", "/usr/bin/chromium")
# How long the page may take to show what a test waits for.
SHOWN_MS = 10_000


class Dashboard:
    """`durable ui`'s app around `client`, served on a free loopback port."""

    def __init__(self, client: AsyncClient) -> None:
        sock = bind("127.0.0.1", 0)
        self.url = url_of(sock)
        self.server = server(client, sock)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        eventually(lambda: self.server.started, timeout=10)

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


def launch_browser() -> Iterator[Any]:
    """A headless chromium, or a skip that says why there is none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.skip(f"playwright is not installed ({error}): pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium (see .ci/run)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
    except Exception as error:  # playwright raises its own Error for a browser that fails
        playwright.stop()
        pytest.skip(f"chromium at {CHROMIUM} cannot be launched: {error}")
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
