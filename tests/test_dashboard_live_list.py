"""The dashboard's list page updates live from WatchWorkflows (server-sent events through
/live-list), in a real browser against real coordinators: a workflow started after the
page opened appears, and its status changes in place, without a reload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from durable.ui.connect import dashboard_client
from tests.dashboard_support import SHOWN_MS, Dashboard, launch_browser
from tests.support import Coordinator, finish, new_id, start_pending

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def dashboard(coordinator: Coordinator) -> Iterator[Dashboard]:
    board = Dashboard(dashboard_client(coordinator.address))
    yield board
    board.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(SHOWN_MS)
    yield tab
    context.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=SHOWN_MS)
    return playwright_expect(locator)


def test_a_workflow_started_after_the_page_opened_appears_and_changes_status_live(
    coordinator: Coordinator, other_coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    name = new_id("dashboard.live").replace("-", "_")
    older = start_pending(coordinator.stub, name=name)
    page.goto(f"{dashboard.url}/?name={name}")
    rows = page.locator("table.workflows tbody tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#list-live")).to_have_text("live")
    page.evaluate("window.notReloaded = true")

    # Through the other coordinator: the dashboard's watch hears it by NOTIFY.
    fresh = start_pending(other_coordinator.stub, name=name)
    start_pending(other_coordinator.stub, name=name + "_not_listed")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(fresh)
    expect(rows.first).to_contain_text("PENDING")

    finish(other_coordinator.stub, fresh)
    expect(rows.filter(has_text=fresh)).to_contain_text("SUCCESS")
    finish(coordinator.stub, older)
    expect(rows.filter(has_text=older)).to_contain_text("SUCCESS")
    assert page.evaluate("window.notReloaded") is True
    expect(rows).to_have_count(2)


def test_a_row_leaves_a_status_filtered_list_when_its_status_changes(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    name = new_id("dashboard.pending").replace("-", "_")
    page.goto(f"{dashboard.url}/?name={name}&status=PENDING")
    expect(page.locator("#list-live")).to_have_text("live")
    rows = page.locator("table.workflows tbody tr[data-workflow-id]")
    expect(rows).to_have_count(0)

    workflow_id = start_pending(coordinator.stub, name=name)
    expect(rows).to_have_count(1)
    finish(coordinator.stub, workflow_id)
    expect(rows).to_have_count(0)


def test_a_later_page_is_not_live(dashboard: Dashboard, page: Any) -> None:
    page.goto(f"{dashboard.url}/?page=bm90LWEtdG9rZW4")
    expect(page.locator("table.workflows[data-live-list]")).to_have_count(0)
