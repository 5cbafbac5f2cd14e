"""`durable ui` in a real browser (chromium through playwright) against a real coordinator
over real gRPC and Postgres: the list and its filters, a running workflow's progress
changing live, cancel from the page, and the errors a person sees instead of data."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.aio import AsyncClient
from durable.ui.connect import dashboard_client
from durable.v1 import coordinator_pb2 as pb
from tests.dashboard_support import SHOWN_MS, Dashboard, launch_browser
from tests.support import ROOT, Coordinator, finish, free_port, new_id, set_event, start_pending

pytestmark = pytest.mark.timeout(180)

TOKEN = "token-of-the-dashboard-team-4e1b"


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


# --- workflows the tests run ---------------------------------------------------------------


@durable.step
def fetch_orders(batch: str) -> int:
    time.sleep(0.3)
    return 120


@durable.step
def price_orders(count: int) -> float:
    time.sleep(0.5)
    return count * 9.5


@durable.step
def load_orders(total: float) -> str:
    time.sleep(0.2)
    return f"loaded {total:.2f}"


@durable.workflow(name="dashboard.import_orders")
def import_orders(batch: str) -> str:
    durable.set_event("status", "fetching")
    count = fetch_orders(batch)
    total = price_orders(count)
    durable.set_event("progress", 50)
    durable.set_event("status", "waiting for approval")
    approval = durable.recv("approve", timeout=60)
    durable.set_event("status", "loading")
    loaded = load_orders(total)
    durable.set_event("progress", 100)
    durable.set_event("status", "complete")
    return f"{loaded} ({approval})"


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_workflows_and_filters_them(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    stub = coordinator.stub
    prefix = new_id("shipping")
    running = start_pending(stub, f"{prefix}-running", name="dashboard.ship")
    done = start_pending(stub, f"{prefix}-done", name="dashboard.ship")
    finish(stub, done)
    other = start_pending(stub, name="dashboard.other")

    page.goto(dashboard.url + "/")
    rows = page.locator("table.workflows tbody tr")
    expect(rows.filter(has_text=running)).to_contain_text("PENDING")
    expect(rows.filter(has_text=done)).to_contain_text("SUCCESS")
    expect(rows.filter(has_text=other)).to_be_visible()
    expect(page.locator('#counts [data-count="SUCCESS"]')).to_contain_text("1")

    page.fill("input[name=name]", "dashboard.ship")
    page.check("input[name=status][value=SUCCESS]")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(done)

    page.uncheck("input[name=status][value=SUCCESS]")
    page.fill("input[name=name]", "")
    page.fill("input[name=id]", f"{prefix}-r")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(running)

    page.click(f"text={running}")
    expect(page.locator("h1.workflow-id")).to_have_text(running)


def test_the_application_version_is_shown_where_workflows_have_one(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    name = f"dashboard.versioned_{new_id('n').replace('-', '_')}"
    workflow_id = new_id("versioned")
    coordinator.stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, app_version="2026.12.1")
    )
    page.goto(dashboard.url + f"/?name={name}")
    expect(page.locator("table.workflows thead")).to_contain_text("Version")
    expect(page.locator("table.workflows tbody tr").first).to_contain_text("2026.12.1")
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    expect(page.locator("#summary dl.fields")).to_contain_text("Version2026.12.1")


class CountingClient(AsyncClient):
    """The dashboard's client, counting the workflows each ListWorkflows call returns."""

    def __init__(self, target: str) -> None:
        super().__init__(target, session=False)
        self.rows_read: list[int] = []

    async def list_workflows(self, request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsResponse:
        reply = await super().list_workflows(request)
        self.rows_read.append(len(reply.workflows))
        return reply


def test_ten_thousand_workflows_are_listed_a_page_at_a_time(
    coordinator: Coordinator, page: Any
) -> None:
    stub = coordinator.stub
    name = f"dashboard.bulk_{new_id('n').replace('-', '_')}"
    with ThreadPoolExecutor(32) as pool:
        ids = list(pool.map(lambda _: start_pending(stub, name=name), range(10_000)))
    client = CountingClient(coordinator.address)
    board = Dashboard(client)
    try:
        page.goto(board.url + "/?" + f"name={name}")
        rows = page.locator("table.workflows tbody tr")
        expect(rows).to_have_count(50)
        # Counts read one page of at most 1000 per status: beyond it they say so.
        expect(page.locator('#counts [data-count="PENDING"]')).to_contain_text("1000+")
        # What it took: one page of 50 for the list, at most 1000 per status for the counts.
        assert sorted(client.rows_read) == [0, 0, 0, 0, 0, 50, 1000]
        seen = set(rows.evaluate_all("rows => rows.map(r => r.dataset.workflowId)"))
        page.click("a[rel=next]")
        expect(rows).to_have_count(50)
        second = set(rows.evaluate_all("rows => rows.map(r => r.dataset.workflowId)"))
        assert not seen & second
        assert seen | second <= set(ids)
    finally:
        board.close()


# --- one workflow, live --------------------------------------------------------------------


def test_a_running_workflows_progress_changes_live_on_its_page(
    coordinator: Coordinator, dashboard: Dashboard, page: Any, sdk: None
) -> None:
    workflow_id = new_id("import")
    with durable.set_workflow_id(workflow_id):
        handle = durable.start_workflow(import_orders, "batch-7")
    durable.get_event(workflow_id, "status", timeout=30)
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    expect(page.locator("#live-state")).to_have_text("live")
    progress = page.locator('[data-event-key="progress"] .event-value')
    expect(progress).to_contain_text("50")
    expect(page.locator("#summary .status")).to_have_text("PENDING")
    expect(page.locator("svg.gantt")).to_be_visible()
    steps = page.locator("table.steps tbody tr[data-step-id]")
    expect(steps.filter(has_text="price_orders")).to_contain_text("step")
    expect(steps.filter(has_text="load_orders")).to_have_count(0)

    durable.send(workflow_id, "approved by ops", topic="approve")

    expect(progress).to_contain_text("100")
    expect(steps.filter(has_text="load_orders")).to_be_visible()
    expect(page.locator("#summary .status")).to_have_text("SUCCESS")
    expect(page.locator("#summary")).to_contain_text("loaded 1140.00 (approved by ops)")
    # Every version of the event, from the first (GetEvent follow from_first_value).
    versions = page.locator('[data-event-key="status"] .versions li')
    expect(versions).to_have_count(4)
    expect(versions.first).to_contain_text('"fetching"')
    expect(page.locator('[data-event-key="progress"] .versions li')).to_have_count(2)
    expect(page.locator("table.messages")).to_contain_text("approved by ops")
    expect(page.locator("#live-state")).to_have_text("finished")
    assert handle.result(timeout=30) == "loaded 1140.00 (approved by ops)"

    screenshot = os.environ.get("DURABLE_UI_SCREENSHOT")
    if screenshot:
        page.locator("time").first.wait_for()
        page.screenshot(path=str(ROOT / Path(screenshot)), full_page=True)


def test_a_workflow_page_shows_the_whole_history_of_a_finished_workflow(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    stub = coordinator.stub
    workflow_id = start_pending(stub)
    for step, value in enumerate((10, 40, 70), start=1):
        set_event(stub, workflow_id, step, "progress", value)
    stub.FinishWorkflow(
        pb.FinishWorkflowRequest(
            workflow_id=workflow_id,
            error=pb.Failure(type="builtins.ValueError", message="bad row 17", details="trace"),
        )
    )
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    expect(page.locator("#summary .status")).to_have_text("ERROR")
    expect(page.locator("#summary pre.failure")).to_have_text("builtins.ValueError: bad row 17")
    items = page.locator('[data-event-key="progress"] .versions li')
    expect(items).to_have_count(3)
    assert [text.split()[0] for text in items.all_inner_texts()] == ["v1", "v2", "v3"]
    expect(page.locator("#live-state")).to_have_text("finished")


# --- actions -------------------------------------------------------------------------------


def test_cancel_from_the_page_changes_the_workflows_status(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    workflow_id = start_pending(coordinator.stub)
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    expect(page.locator("#summary .status")).to_have_text("PENDING")

    page.click("button[data-action=cancel]")
    expect(page.locator("#confirm")).to_contain_text(f"Cancel workflow {workflow_id}?")
    page.click("#confirm button[value=no]")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#summary .status")).to_have_text("PENDING")

    page.click("button[data-action=cancel]")
    page.click("#confirm-yes")
    expect(page.locator("#summary .status")).to_have_text("CANCELLED")
    expect(page.locator("#action-result")).to_contain_text("CANCELLED")
    reply = coordinator.stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=workflow_id))
    assert reply.workflow.status == pb.WORKFLOW_STATUS_CANCELLED


def test_a_refused_action_shows_the_coordinators_reason(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    workflow_id = start_pending(coordinator.stub)
    finish(coordinator.stub, workflow_id)
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    page.click("button[data-action=resume]")
    page.click("#confirm-yes")
    result = page.locator("#action-result")
    expect(result).to_have_class("refused")
    expect(result).to_contain_text("FAILED_PRECONDITION")
    expect(result).to_contain_text("finished with SUCCESS; fork it to run it again")
    expect(page.locator("#summary .status")).to_have_text("SUCCESS")


def test_fork_from_a_step_opens_the_new_workflow(
    coordinator: Coordinator, dashboard: Dashboard, page: Any
) -> None:
    stub = coordinator.stub
    workflow_id = start_pending(stub)
    set_event(stub, workflow_id, 1, "progress", 10)
    set_event(stub, workflow_id, 2, "progress", 20)
    finish(stub, workflow_id)
    page.goto(dashboard.url + f"/workflows/{workflow_id}")
    page.fill(".actions input[name=step]", "2")
    page.click("button[data-action=fork]")
    expect(page.locator("#confirm")).to_contain_text("from step 2")
    page.click("#confirm-yes")
    expect(page.locator("#action-result")).to_contain_text("Forked from step 2")
    page.click("#action-result a")
    expect(page.locator("#summary .status")).to_have_text("ENQUEUED")
    expect(page.locator("#summary")).to_contain_text(f"Forked from{workflow_id}")


# --- what a person sees instead of data ----------------------------------------------------


def test_an_unknown_workflow_gets_a_not_found_page(dashboard: Dashboard, page: Any) -> None:
    reply = page.goto(dashboard.url + "/workflows/no-such-workflow")
    assert reply is not None and reply.status == 404
    expect(page.locator("h1")).to_have_text("Workflow not found")
    expect(page.locator("main")).to_contain_text("no-such-workflow")


def test_an_unauthenticated_dashboard_shows_the_error_instead_of_data(
    database_url: str, tmp_path: Path, browser: Any, page: Any
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"team-a={TOKEN}\n")
    guarded = Coordinator(database_url, "--tokens-file", str(tokens))
    try:
        guarded.wait_serving()
        secret = new_id("secret")
        guarded.stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=secret, name="dashboard.secret"),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
        )
        anonymous = Dashboard(dashboard_client(guarded.address))
        try:
            reply = page.goto(anonymous.url + "/")
            assert reply is not None and reply.status == 401
            expect(page.locator("#banner")).to_contain_text("not authenticated")
            expect(page.locator("#banner")).to_contain_text("--token")
            expect(page.locator("table.workflows")).to_have_count(0)
            page.goto(anonymous.url + f"/workflows/{secret}")
            expect(page.locator("#banner")).to_contain_text("not authenticated")
            expect(page.locator("#summary")).to_have_count(0)
        finally:
            anonymous.close()
    finally:
        guarded.stop()


def test_a_coordinator_that_is_down_shows_a_banner_then_the_page_when_it_is_back(
    database_url: str, page: Any
) -> None:
    port = free_port()
    board = Dashboard(dashboard_client(f"127.0.0.1:{port}"))
    try:
        page.goto(board.url + "/")
        expect(page.locator("#banner")).to_contain_text("unavailable")
        expect(page.locator("#banner")).to_contain_text("reconnects")
        back = Coordinator(database_url, port=port)
        try:
            back.wait_serving()
            expect(page.locator("table.workflows")).to_be_visible(timeout=20_000)
            expect(page.locator("#banner")).to_be_hidden()
        finally:
            back.stop()
    finally:
        board.close()
