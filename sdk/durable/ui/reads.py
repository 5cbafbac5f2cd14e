"""The dashboard's reads, each bounded: a page of workflows, counts per status, a
workflow's steps and children. Every read goes through the SDK's async client, so the
dashboard sees exactly what any client of the public API sees."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime

from durable._aio.client import AsyncClient
from durable._core.specs import WorkflowStatus
from durable._management import (
    MAX_PAGE_SIZE,
    StepInfo,
    WorkflowInfo,
    list_request,
    step_info,
    workflow_info,
)
from durable.v1 import coordinator_pb2 as pb

# Rows on one page of the workflow list.
PAGE_SIZE = 50
# Each status's count reads at most this many workflows (one ListWorkflows page); beyond
# it the page shows "1000+". The API has no count call, and a dashboard must not read a
# whole table to draw a number.
COUNT_LIMIT = MAX_PAGE_SIZE
# ListWorkflows has no ID filter: an ID prefix is matched here, over at most this many
# workflows per page shown (newest first); "Next" goes on scanning from where this stopped.
PREFIX_SCAN_LIMIT = 2000
_PREFIX_SCAN_PAGE = 500
# A workflow page shows at most this many steps and children.
STEP_LIMIT = 2000
CHILD_LIMIT = 100


@dataclass(frozen=True)
class Row:
    """A workflow as the dashboard shows it: decoded, with its raw wire message (for the
    fields this SDK's dataclass does not carry yet, such as an application version)."""

    info: WorkflowInfo
    message: pb.Workflow

    @property
    def version(self) -> str:
        """The workflow's application version where the coordinator records one ("" when
        it does not, or the API predates the field)."""
        return str(getattr(self.message, "app_version", "") or "")

    @property
    def schedule(self) -> str:
        """The schedule that started it, where the coordinator records one."""
        return str(getattr(self.message, "schedule_name", "") or "")

    @property
    def failure_details(self) -> str:
        return self.message.error.details if self.message.HasField("error") else ""


def row(message: pb.Workflow) -> Row:
    return Row(workflow_info(message), message)


@dataclass(frozen=True)
class ListFilter:
    """The list page's filters, as the query string gives them."""

    statuses: tuple[WorkflowStatus, ...] = ()
    name: str = ""
    id_prefix: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None

    def request(self, page_size: int, token: str = "") -> pb.ListWorkflowsRequest:
        request = list_request(
            self.statuses or None,
            self.name or None,
            self.created_after,
            self.created_before,
            None,
            None,
            page_size,
        )
        request.page_token = token
        return request

    def matches(self, message: pb.Workflow) -> bool:
        return message.workflow_id.startswith(self.id_prefix)


@dataclass(frozen=True)
class ListPage:
    rows: list[Row]
    next_token: str
    # With an ID prefix: how many workflows were read to find these rows.
    scanned: int = 0


async def list_page(
    client: AsyncClient, where: ListFilter, token: str = "", page_size: int = PAGE_SIZE
) -> ListPage:
    """One page of the list: `page_size` rows from `token` on; with an ID prefix, the
    matches among at most PREFIX_SCAN_LIMIT workflows read from `token` on."""
    if not where.id_prefix:
        reply = await client.list_workflows(where.request(page_size, token))
        return ListPage([row(m) for m in reply.workflows], reply.next_page_token)
    rows: list[Row] = []
    scanned = 0
    while True:
        reply = await client.list_workflows(where.request(_PREFIX_SCAN_PAGE, token))
        scanned += len(reply.workflows)
        rows += [row(m) for m in reply.workflows if where.matches(m)]
        token = reply.next_page_token
        if not token or len(rows) >= page_size or scanned >= PREFIX_SCAN_LIMIT:
            return ListPage(rows, token, scanned)


@dataclass(frozen=True)
class Count:
    """How many workflows have a status: exact, or at least `value` when `more`."""

    value: int
    more: bool

    def __str__(self) -> str:
        return f"{self.value}+" if self.more else str(self.value)


async def status_counts(client: AsyncClient, where: ListFilter) -> dict[WorkflowStatus, Count]:
    """Workflows per status under the filters (their status filter aside), each read at
    most COUNT_LIMIT deep: one ListWorkflows page per status, all at once."""

    async def count(status: WorkflowStatus) -> Count:
        scoped = replace(where, statuses=(status,))
        reply = await client.list_workflows(scoped.request(COUNT_LIMIT))
        found = sum(1 for m in reply.workflows if scoped.matches(m))
        return Count(found, bool(reply.next_page_token))

    statuses = list(WorkflowStatus)
    counts = await asyncio.gather(*(count(status) for status in statuses))
    return dict(zip(statuses, counts, strict=True))


@dataclass
class Steps:
    """A workflow's steps as read so far: the next read asks only for later ones."""

    steps: list[StepInfo] = field(default_factory=list)
    truncated: bool = False

    @property
    def last_step_id(self) -> int:
        return self.steps[-1].step_id if self.steps else 0

    async def read_more(self, client: AsyncClient, workflow_id: str) -> list[StepInfo]:
        """Read the steps recorded after the last one known (up to STEP_LIMIT in all);
        returns the new ones."""
        new: list[StepInfo] = []
        while not self.truncated:
            room = STEP_LIMIT - len(self.steps)
            if room <= 0:
                self.truncated = True
                break
            reply = await client.list_steps(
                workflow_id, after_step_id=self.last_step_id, page_size=min(room, MAX_PAGE_SIZE)
            )
            batch = [step_info(step) for step in reply.steps]
            self.steps += batch
            new += batch
            if not reply.has_more or not batch:
                break
        return new


async def children(client: AsyncClient, workflow_id: str) -> tuple[list[Row], bool]:
    """The workflow's child workflows (at most CHILD_LIMIT) and whether there are more."""
    request = pb.ListWorkflowsRequest(parent_workflow_id=workflow_id, page_size=CHILD_LIMIT)
    reply = await client.list_workflows(request)
    return [row(m) for m in reply.workflows], bool(reply.next_page_token)
