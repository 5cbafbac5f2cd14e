"""The reliability suite's fixtures: every test here is marked `reliability`, records its
figures in the session report, and the report is printed and written at the end."""

from __future__ import annotations

import pytest

from tests.reliability.report import REPORT, REPORT_PATH, Report
from tests.reliability.scale import MODE, SEED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def report() -> Report:
    return REPORT


def pytest_report_header() -> str:
    return f"reliability: mode={MODE} seed={SEED} (DURABLE_RELIABILITY_SEED replays it)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.sections:
        return
    REPORT.write()
    terminalreporter.section("reliability report")
    for line in REPORT.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"  written to {REPORT_PATH}")
