"""Cron schedules over real gRPC and real Postgres (ScheduleService): create and update in
place, errors, the workflows ticks start (ENQUEUED, name@tick, one per tick), workers
claiming them, pause, resume, delete, trigger, warnings, listing, namespaces, and the
catch-up policies after a simulated downtime.

Times are read from the database's clock, as the coordinators read ticks. Where a test
must show that something does NOT happen (no tick while paused or after a delete), it
watches a window bounded by that clock, long enough for several ticks, and says so.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.schedules.cron import MAX_CATCH_UP, ON_TIME, Cron, tick_workflow_id
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import schedules_pb2 as spb
from durable.v1 import schedules_pb2_grpc as spb_grpc
from tests.support import (
    RPC_TIMEOUT,
    Activity,
    Coordinator,
    Stub,
    create_database,
    drop_database,
    duration,
    error_info,
    eventually,
    new_id,
    rpc_error,
    running_coordinator,
)

SECOND = timedelta(seconds=1)
EVERY_SECOND = "* * * * * *"
# How long a test waits for a tick that is due: the ticker wakes for each tick, so a
# second or two; generous for a loaded CI machine.
TICK_WAIT = 15.0
# The window over which an absence (no tick while paused, none after a delete) is
# observed: three would-be ticks of an every-second schedule.
QUIET_WINDOW = timedelta(seconds=3)
INPUT = pb.Payload(encoding="json", data=b'{"args": [], "kwargs": {"report": "daily"}}')

ScheduleStub = spb_grpc.ScheduleServiceStub
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Tick:
    """A workflow a schedule started, as recorded."""

    workflow_id: str
    scheduled_at: datetime
    status: str
    queue_name: str | None


@pytest.fixture(scope="module")
def schedules(coordinator: Coordinator) -> ScheduleStub:
    return spb_grpc.ScheduleServiceStub(coordinator.channel)


@pytest.fixture
def name(schedules: ScheduleStub) -> Iterator[str]:
    """A fresh schedule name; the schedule is deleted after the test (its workflows stay)."""
    value = f"sched-{uuid.uuid4().hex[:12]}"
    yield value
    schedules.DeleteSchedule(spb.DeleteScheduleRequest(name=value), timeout=RPC_TIMEOUT)


@pytest.fixture
def workflow() -> str:
    """A fresh workflow name, so no other test's workers or workflows are involved."""
    return f"tests.scheduled.{uuid.uuid4().hex[:12]}"


def spec(name: str, cron: str, workflow_name: str, **fields: Any) -> spb.ScheduleSpec:
    return spb.ScheduleSpec(name=name, cron=cron, workflow_name=workflow_name, **fields)


def set_schedule(
    stub: ScheduleStub, message: spb.ScheduleSpec, metadata: Metadata = ()
) -> spb.SetScheduleResponse:
    return stub.SetSchedule(
        spb.SetScheduleRequest(spec=message), timeout=RPC_TIMEOUT, metadata=metadata
    )


def get_schedule(stub: ScheduleStub, name: str, metadata: Metadata = ()) -> spb.GetScheduleResponse:
    return stub.GetSchedule(
        spb.GetScheduleRequest(name=name), timeout=RPC_TIMEOUT, metadata=metadata
    )


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def when(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=timezone.utc)


def whole_second_after(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + SECOND


def ticks_of(database_url: str, schedule: str, namespace: str = "default") -> list[Tick]:
    """The workflows the schedule started, by tick (triggered ones excluded)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            """SELECT workflow_id, scheduled_at, status, queue_name FROM durable.workflows
                WHERE schedule_name = %s AND namespace = %s AND workflow_id NOT LIKE '%%@manual-%%'
                ORDER BY scheduled_at, workflow_id""",
            (schedule, namespace),
        ).fetchall()
    return [Tick(*row) for row in found]


def wait_ticks(
    database_url: str, schedule: str, count: int, after: datetime | None = None
) -> list[Tick]:
    """The schedule's ticks once at least `count` of them (after `after`) have started."""

    def enough() -> list[Tick] | None:
        found = ticks_of(database_url, schedule)
        later = [t for t in found if after is None or t.scheduled_at > after]
        return found if len(later) >= count else None

    return eventually(enough, timeout=TICK_WAIT + count)


def assert_one_per_second(schedule: str, found: list[Tick]) -> None:
    """Consecutive seconds, no gap, no duplicate, each under its name@tick ID."""
    times = [t.scheduled_at for t in found]
    assert times == [times[0] + i * SECOND for i in range(len(times))], times
    assert [t.workflow_id for t in found] == [tick_workflow_id(schedule, t) for t in times]


def wait_clock_past(activity: Activity, moment: datetime) -> None:
    """Wait until the database's clock is past `moment` (bounded)."""
    limit = (moment - activity.now()).total_seconds() + TICK_WAIT
    eventually(lambda: activity.now() > moment, timeout=max(limit, 1.0), interval=0.05)


def get_workflow(stub: Stub, workflow_id: str, metadata: Metadata = ()) -> pb.Workflow:
    return stub.GetWorkflow(
        pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT, metadata=metadata
    ).workflow


def heartbeat(stub: Stub, executor: str, names: list[str], queues: list[str] | None = None) -> None:
    stub.Heartbeat(
        pb.HeartbeatRequest(
            executor_id=executor, workflow_names=names, queues=queues or [], lease=duration(30)
        ),
        timeout=RPC_TIMEOUT,
    )


def poll(stub: Stub, executor: str, n: int) -> list[pb.Workflow]:
    reply = stub.PollWork(
        pb.PollWorkRequest(executor_id=executor, max_workflows=n, timeout=duration(0)),
        timeout=RPC_TIMEOUT,
    )
    return list(reply.workflows)


# --- create, update, read ------------------------------------------------------------------


def test_set_schedule_creates_then_updates_in_place(
    schedules: ScheduleStub, activity: Activity, name: str, workflow: str
) -> None:
    now = activity.now()
    start, end = now + timedelta(days=1), now + timedelta(days=30)
    first = spec(
        name,
        "0 2 * * *",
        workflow,
        time_zone="Europe/Paris",
        input=INPUT,
        queue_name="reports",
        start_time=stamp(start),
        end_time=stamp(end),
        catch_up=spb.CATCH_UP_POLICY_LATEST,
    )
    created = set_schedule(schedules, first)
    assert created.created
    schedule = created.schedule
    assert schedule.spec == first  # every field round-trips
    assert not schedule.paused
    assert not schedule.HasField("last_tick_time") and schedule.last_workflow_id == ""
    ticks = [when(t) for t in schedule.next_tick_times]
    assert len(ticks) == 5
    assert ticks == sorted(set(ticks))
    assert all(start <= t < end for t in ticks)
    zone = Cron.parse("* * * * *", "Europe/Paris").zone
    assert {(t.astimezone(zone).hour, t.astimezone(zone).minute) for t in ticks} == {(2, 0)}
    assert get_schedule(schedules, name).schedule == schedule

    # The same name again: an update in place, with the new spec.
    second = spec(name, "*/30 * * * *", workflow, catch_up=spb.CATCH_UP_POLICY_ALL)
    updated = set_schedule(schedules, second)
    assert not updated.created
    again = updated.schedule
    assert again.create_time == schedule.create_time
    assert when(again.update_time) > when(schedule.update_time)
    # Empty time zone is UTC; no input, queue, start or end any more: the first tick is
    # within the half hour, not after the start time of the first spec.
    assert again.spec == spb.ScheduleSpec(
        name=name,
        cron="*/30 * * * *",
        time_zone="UTC",
        workflow_name=workflow,
        catch_up=spb.CATCH_UP_POLICY_ALL,
    )
    next_ticks = [when(t) for t in again.next_tick_times]
    assert len(next_ticks) == 5
    assert next_ticks == [next_ticks[0] + i * timedelta(minutes=30) for i in range(5)]
    assert next_ticks[0].minute in (0, 30) and next_ticks[0] > now
    assert next_ticks[0] - now <= timedelta(minutes=30, seconds=5)
    # Unspecified catch-up is SKIP, stated as such.
    third = set_schedule(schedules, spec(name, "*/30 * * * *", workflow)).schedule
    assert third.spec.catch_up == spb.CATCH_UP_POLICY_SKIP


def test_an_update_of_a_running_schedule_neither_repeats_nor_skips_a_tick(
    coordinator: Coordinator,
    schedules: ScheduleStub,
    database_url: str,
    name: str,
    workflow: str,
) -> None:
    set_schedule(schedules, spec(name, EVERY_SECOND, workflow))
    before = wait_ticks(database_url, name, 2)
    changed = pb.Payload(encoding="json", data=b'{"args": ["changed"], "kwargs": {}}')
    updated_at = when(
        set_schedule(
            schedules, spec(name, EVERY_SECOND, workflow, input=changed)
        ).schedule.update_time
    )
    found = wait_ticks(database_url, name, 3, after=updated_at)
    assert found[: len(before)] == before
    assert_one_per_second(name, found)
    # Ticks from the update on carry the new input.
    later = [t for t in found if t.scheduled_at > updated_at + SECOND]
    assert later and get_workflow(coordinator.stub, later[0].workflow_id).input == changed


def test_an_update_keeps_a_paused_schedule_paused(
    schedules: ScheduleStub, name: str, workflow: str
) -> None:
    set_schedule(schedules, spec(name, "0 * * * *", workflow))
    schedules.PauseSchedule(spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    updated = set_schedule(schedules, spec(name, "30 * * * *", workflow)).schedule
    assert updated.paused
    assert list(updated.next_tick_times) == []  # none while paused
    assert updated.spec.cron == "30 * * * *"


def test_an_unknown_schedule_is_not_found(schedules: ScheduleStub) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    calls: list[Callable[[], object]] = [
        lambda: get_schedule(schedules, missing),
        lambda: schedules.PauseSchedule(spb.PauseScheduleRequest(name=missing), timeout=5),
        lambda: schedules.ResumeSchedule(spb.ResumeScheduleRequest(name=missing), timeout=5),
        lambda: schedules.TriggerSchedule(spb.TriggerScheduleRequest(name=missing), timeout=5),
    ]
    for call in calls:
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
        info = error_info(err)
        assert (info.reason, info.domain) == ("SCHEDULE_NOT_FOUND", "durable.v1")
        assert info.metadata["schedule"] == missing
        assert missing in (err.details() or "")
    deleted = schedules.DeleteSchedule(spb.DeleteScheduleRequest(name=missing), timeout=5)
    assert not deleted.deleted  # idempotent


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "spec.cron", "out of range"),
        ({"cron": "* * * *"}, "spec.cron", "expected 5 fields"),
        ({"cron": "R * * * *"}, "spec.cron", "random"),
        ({"cron": " "}, "spec.cron", "required"),
        ({"time_zone": "Mars/Olympus"}, "spec.time_zone", "'Mars/Olympus'"),
        ({"name": "a@b"}, "spec.name", "[A-Za-z0-9._:-]"),
        ({"workflow_name": ""}, "spec.workflow_name", "required"),
    ],
)
def test_a_bad_spec_is_refused_saying_why_and_creates_nothing(
    schedules: ScheduleStub,
    name: str,
    workflow: str,
    fields: dict[str, str],
    field: str,
    words: str,
) -> None:
    """The full table of bad input is in tests/test_bad_input.py; here, the messages."""
    bad = spec(name, "0 2 * * *", workflow)
    for key, value in fields.items():
        setattr(bad, key, value)
    err = rpc_error(lambda: set_schedule(schedules, bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field
    details = err.details() or ""
    assert details.startswith(f"{field}: ") and words in details, details
    missing = rpc_error(lambda: get_schedule(schedules, name))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


# --- ticks ---------------------------------------------------------------------------------


def test_every_second_schedule_starts_one_enqueued_workflow_per_tick_which_a_worker_claims(
    coordinator: Coordinator,
    schedules: ScheduleStub,
    database_url: str,
    name: str,
    workflow: str,
) -> None:
    reply = set_schedule(schedules, spec(name, EVERY_SECOND, workflow, input=INPUT))
    created_at = when(reply.schedule.create_time)
    found = wait_ticks(database_url, name, 4)
    # From the first whole second after it was created (the clock is read a moment before
    # create_time is stamped): no tick before, none skipped.
    first = found[0].scheduled_at
    slack = timedelta(milliseconds=50)
    assert whole_second_after(created_at - slack) <= first <= whole_second_after(created_at)
    assert_one_per_second(name, found)
    assert all(t.status == "ENQUEUED" and t.queue_name is None for t in found)

    started = get_workflow(coordinator.stub, found[0].workflow_id)
    assert started.name == workflow
    assert started.status == pb.WORKFLOW_STATUS_ENQUEUED
    assert started.schedule_name == name
    assert when(started.scheduled_time) == found[0].scheduled_at
    assert started.input == INPUT
    assert when(started.create_time) >= found[0].scheduled_at  # started at its tick, not before

    shown = get_schedule(schedules, name).schedule
    assert shown.last_workflow_id.startswith(f"{name}@")
    assert tick_workflow_id(name, when(shown.last_tick_time)) == shown.last_workflow_id

    # A worker that registers the workflow name claims them (raw Heartbeat + PollWork).
    executor = new_id("exec")
    heartbeat(coordinator.stub, executor, [workflow])
    claimed = poll(coordinator.stub, executor, 100)
    ids = {t.workflow_id for t in found}
    assert ids <= {w.workflow_id for w in claimed}
    assert all(w.schedule_name == name and w.executor_id == executor for w in claimed)
    assert get_workflow(coordinator.stub, found[0].workflow_id).status == (
        pb.WORKFLOW_STATUS_PENDING
    )


def test_a_schedule_with_a_queue_enqueues_on_it_for_workers_serving_it(
    coordinator: Coordinator, schedules: ScheduleStub, name: str, workflow: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    set_schedule(schedules, spec(name, "0 0 1 1 *", workflow, queue_name=queue))
    started = schedules.TriggerSchedule(
        spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT
    ).workflow
    assert (started.queue_name, started.status) == (queue, pb.WORKFLOW_STATUS_ENQUEUED)

    # A worker of the workflow that does not serve the queue: not claimed, and said so.
    outsider = new_id("exec")
    heartbeat(coordinator.stub, outsider, [workflow])
    assert poll(coordinator.stub, outsider, 10) == []
    [warning] = get_schedule(schedules, name).warnings
    assert f"no live worker registers workflow {workflow!r} serving queue {queue!r}" in warning

    member = new_id("exec")
    heartbeat(coordinator.stub, member, [workflow], [queue])
    [claimed] = poll(coordinator.stub, member, 10)
    assert claimed.workflow_id == started.workflow_id
    assert list(get_schedule(schedules, name).warnings) == []


def test_pause_starts_nothing_and_resume_goes_on_from_now_without_the_paused_ticks(
    schedules: ScheduleStub, activity: Activity, database_url: str, name: str, workflow: str
) -> None:
    set_schedule(schedules, spec(name, EVERY_SECOND, workflow, catch_up=spb.CATCH_UP_POLICY_ALL))
    wait_ticks(database_url, name, 2)

    paused = schedules.PauseSchedule(spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert paused.schedule.paused and list(paused.schedule.next_tick_times) == []
    paused_at = when(paused.schedule.update_time)
    again = schedules.PauseSchedule(spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert again.schedule.paused  # idempotent
    assert get_schedule(schedules, name).warnings[0].startswith("paused: ")

    # An absence, observed over a bounded window of the database's clock: three ticks'
    # worth of time after the pause, no workflow for a tick after it.
    wait_clock_past(activity, paused_at + QUIET_WINDOW)
    before_resume = ticks_of(database_url, name)
    assert all(t.scheduled_at <= paused_at for t in before_resume)
    assert_one_per_second(name, before_resume)

    resumed = schedules.ResumeSchedule(spb.ResumeScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert not resumed.schedule.paused
    resumed_at = when(resumed.schedule.update_time)
    assert when(resumed.schedule.next_tick_times[0]) <= resumed_at + SECOND
    found = wait_ticks(database_url, name, 3, after=paused_at)
    after = [t for t in found if t.scheduled_at > paused_at]
    # Not the ticks missed while paused, even with CATCH_UP_POLICY_ALL: from now on. (The
    # resume reads the clock a moment before it stamps update_time: 100 ms of slack.)
    assert after[0].scheduled_at > resumed_at - timedelta(milliseconds=100)
    assert after[0].scheduled_at <= resumed_at + SECOND
    assert_one_per_second(name, after)
    idle = schedules.ResumeSchedule(spb.ResumeScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert idle.schedule.update_time == resumed.schedule.update_time  # idempotent


def test_delete_removes_the_schedule_and_leaves_its_workflows_alone(
    coordinator: Coordinator,
    schedules: ScheduleStub,
    activity: Activity,
    database_url: str,
    name: str,
    workflow: str,
) -> None:
    set_schedule(schedules, spec(name, EVERY_SECOND, workflow))
    wait_ticks(database_url, name, 2)
    manual = schedules.TriggerSchedule(
        spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT
    ).workflow

    deleted = schedules.DeleteSchedule(spb.DeleteScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert deleted.deleted
    deleted_at = activity.now()
    assert rpc_error(lambda: get_schedule(schedules, name)).code() == grpc.StatusCode.NOT_FOUND
    listed = schedules.ListSchedules(
        spb.ListSchedulesRequest(workflow_name=workflow), timeout=RPC_TIMEOUT
    )
    assert list(listed.schedules) == []

    # An absence over a bounded window: no tick after the delete for three ticks' time.
    wait_clock_past(activity, deleted_at + QUIET_WINDOW)
    found = ticks_of(database_url, name)
    assert found and all(t.scheduled_at <= deleted_at for t in found)
    # Its workflows stay, as they were: never cancelled.
    for workflow_id in [*(t.workflow_id for t in found), manual.workflow_id]:
        kept = get_workflow(coordinator.stub, workflow_id)
        assert kept.status == pb.WORKFLOW_STATUS_ENQUEUED, workflow_id
        assert kept.schedule_name == name
    again = schedules.DeleteSchedule(spb.DeleteScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert not again.deleted


def test_trigger_starts_the_workflow_now_also_when_paused(
    coordinator: Coordinator,
    schedules: ScheduleStub,
    activity: Activity,
    database_url: str,
    name: str,
    workflow: str,
) -> None:
    set_schedule(schedules, spec(name, "0 0 1 1 *", workflow, input=INPUT))
    schedules.PauseSchedule(spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    before = activity.now()
    first = schedules.TriggerSchedule(spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    second = schedules.TriggerSchedule(spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    after = activity.now()
    for started in (first.workflow, second.workflow):
        assert re.fullmatch(rf"{re.escape(name)}@manual-[0-9a-f]{{32}}", started.workflow_id)
        assert started.status == pb.WORKFLOW_STATUS_ENQUEUED
        assert (started.name, started.schedule_name) == (workflow, name)
        assert before <= when(started.scheduled_time) <= after
        assert started.input == INPUT
        assert get_workflow(coordinator.stub, started.workflow_id) == started
    assert first.workflow.workflow_id != second.workflow.workflow_id
    # A trigger is no tick: the schedule's own record and ticks are unchanged.
    shown = get_schedule(schedules, name).schedule
    assert shown.paused and shown.last_workflow_id == ""
    assert ticks_of(database_url, name) == []


def test_a_trigger_with_a_workflow_id_is_idempotent_and_refuses_another_workflows_id(
    coordinator: Coordinator, schedules: ScheduleStub, name: str, workflow: str
) -> None:
    set_schedule(schedules, spec(name, "0 0 1 1 *", workflow, input=INPUT))
    chosen = f"{name}@manual-retry"
    request = spb.TriggerScheduleRequest(name=name, workflow_id=chosen)
    first = schedules.TriggerSchedule(request, timeout=RPC_TIMEOUT).workflow
    again = schedules.TriggerSchedule(request, timeout=RPC_TIMEOUT).workflow
    assert first.workflow_id == again.workflow_id == chosen
    assert first.create_time == again.create_time  # the retry found the first start
    other = f"plain-{uuid.uuid4().hex}"
    coordinator.stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=other, name=workflow), timeout=RPC_TIMEOUT
    )
    with pytest.raises(grpc.RpcError) as refused:
        schedules.TriggerSchedule(
            spb.TriggerScheduleRequest(name=name, workflow_id=other), timeout=RPC_TIMEOUT
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workflow_id" in (refused.value.details() or "")


def test_list_workflows_filters_by_the_schedule_that_started_them(
    coordinator: Coordinator, schedules: ScheduleStub, name: str, workflow: str
) -> None:
    set_schedule(schedules, spec(name, "0 0 1 1 *", workflow, input=INPUT))
    triggered = {
        schedules.TriggerSchedule(
            spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT
        ).workflow.workflow_id
        for _ in range(3)
    }
    coordinator.stub.StartWorkflow(
        pb.StartWorkflowRequest(workflow_id=f"plain-{uuid.uuid4().hex}", name=workflow),
        timeout=RPC_TIMEOUT,
    )
    listed = coordinator.stub.ListWorkflows(
        pb.ListWorkflowsRequest(schedule_name=name), timeout=RPC_TIMEOUT
    )
    assert {w.workflow_id for w in listed.workflows} == triggered
    assert all(w.schedule_name == name for w in listed.workflows)


# --- warnings, the end, the start ----------------------------------------------------------


def test_warnings_say_why_workflows_would_not_run(
    coordinator: Coordinator, schedules: ScheduleStub, name: str, workflow: str
) -> None:
    set_schedule(schedules, spec(name, "0 0 1 1 *", workflow))
    [warning] = get_schedule(schedules, name).warnings
    assert warning == (
        f"no live worker registers workflow {workflow!r}: its workflows wait ENQUEUED until one"
        " does"
    )
    # A worker of another workflow changes nothing; one of this workflow does.
    heartbeat(coordinator.stub, new_id("exec"), [f"{workflow}.other"])
    assert len(get_schedule(schedules, name).warnings) == 1
    heartbeat(coordinator.stub, new_id("exec"), ["unrelated", workflow])
    assert list(get_schedule(schedules, name).warnings) == []

    schedules.PauseSchedule(spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT)
    assert list(get_schedule(schedules, name).warnings) == [
        "paused: no workflow is started for its ticks until it is resumed"
    ]


def test_a_schedule_whose_end_has_passed_says_it_ended(
    schedules: ScheduleStub, activity: Activity, name: str, workflow: str
) -> None:
    ended = activity.now() - timedelta(minutes=1)
    reply = set_schedule(schedules, spec(name, EVERY_SECOND, workflow, end_time=stamp(ended)))
    assert list(reply.schedule.next_tick_times) == []
    warnings = get_schedule(schedules, name).warnings
    assert "ended: it has no tick left before its end time" in warnings


def test_ticks_run_from_the_start_time_and_stop_before_the_end_time(
    schedules: ScheduleStub, activity: Activity, database_url: str, name: str, workflow: str
) -> None:
    start = whole_second_after(activity.now()) + 2 * SECOND
    end = start + 3 * SECOND
    reply = set_schedule(
        schedules,
        spec(name, EVERY_SECOND, workflow, start_time=stamp(start), end_time=stamp(end)),
    )
    assert [when(t) for t in reply.schedule.next_tick_times] == [
        start + i * SECOND for i in range(3)
    ]
    # Bounded: the schedule says it ended once its last tick is done.
    eventually(
        lambda: any(w.startswith("ended: ") for w in get_schedule(schedules, name).warnings),
        timeout=TICK_WAIT,
        interval=0.1,
    )
    found = ticks_of(database_url, name)
    assert [t.scheduled_at for t in found] == [start, start + SECOND, start + 2 * SECOND]
    assert_one_per_second(name, found)


# --- listing -------------------------------------------------------------------------------


def test_list_schedules_pages_by_name_and_filters_by_workflow(
    schedules: ScheduleStub, workflow: str
) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i}" for i in (3, 0, 4, 1, 2)]
    try:
        for each in names:
            set_schedule(schedules, spec(each, "0 0 1 1 *", workflow))
        set_schedule(schedules, spec(f"{prefix}-other", "0 0 1 1 *", f"{workflow}.other"))
        pages: list[list[str]] = []
        token = ""
        while True:
            reply = schedules.ListSchedules(
                spb.ListSchedulesRequest(page_size=2, page_token=token, workflow_name=workflow),
                timeout=RPC_TIMEOUT,
            )
            pages.append([s.spec.name for s in reply.schedules])
            assert all(s.spec.workflow_name == workflow for s in reply.schedules)
            assert all(len(s.next_tick_times) == 5 for s in reply.schedules)
            token = reply.next_page_token
            if not token:
                break
        assert pages == [sorted(names)[0:2], sorted(names)[2:4], sorted(names)[4:]]
        everything = schedules.ListSchedules(spb.ListSchedulesRequest(), timeout=RPC_TIMEOUT)
        listed = [s.spec.name for s in everything.schedules]
        assert set(names) | {f"{prefix}-other"} <= set(listed)
        assert listed == sorted(listed)
    finally:
        for each in [*names, f"{prefix}-other"]:
            schedules.DeleteSchedule(spb.DeleteScheduleRequest(name=each), timeout=RPC_TIMEOUT)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page_token": "not base64!"}, "page_token"),
        ({"page_token": "AA=="}, "page_token"),  # a NUL byte
        ({"workflow_name": "a\nb"}, "workflow_name"),
    ],
)
def test_list_schedules_refuses_bad_requests(
    schedules: ScheduleStub, request_fields: dict[str, Any], field: str
) -> None:
    err = rpc_error(
        lambda: schedules.ListSchedules(
            spb.ListSchedulesRequest(**request_fields), timeout=RPC_TIMEOUT
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == field


# --- namespaces ----------------------------------------------------------------------------

TOKENS = {"team-a": "token-of-team-a-5e1b7", "team-b": "token-of-team-b-90c2d"}


def as_team(team: str) -> Metadata:
    return (("authorization", f"Bearer {TOKENS[team]}"),)


@pytest.fixture(scope="module")
def token_coordinator(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Coordinator]:
    tokens: Path = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("".join(f"{ns}={token}\n" for ns, token in TOKENS.items()))
    with running_coordinator(database_url, "--tokens-file", str(tokens)) as process:
        yield process


def test_namespaces_keep_their_schedules_and_workflows_apart(
    token_coordinator: Coordinator,
) -> None:
    stub = spb_grpc.ScheduleServiceStub(token_coordinator.channel)
    name = f"shared-{uuid.uuid4().hex[:8]}"  # the same name in both namespaces
    a = set_schedule(stub, spec(name, "0 0 1 1 *", "team.a.flow"), as_team("team-a"))
    b = set_schedule(stub, spec(name, "0 0 1 1 *", "team.b.flow"), as_team("team-b"))
    assert a.created and b.created  # two schedules, not an update
    assert get_schedule(stub, name, as_team("team-a")).schedule.spec.workflow_name == "team.a.flow"
    assert get_schedule(stub, name, as_team("team-b")).schedule.spec.workflow_name == "team.b.flow"

    for team in TOKENS:
        listed = stub.ListSchedules(
            spb.ListSchedulesRequest(), timeout=RPC_TIMEOUT, metadata=as_team(team)
        )
        mine = [s.spec.workflow_name for s in listed.schedules if s.spec.name == name]
        assert mine == [f"team.{team[-1]}.flow"]

    # A trigger starts the workflow in its schedule's namespace only.
    started = stub.TriggerSchedule(
        spb.TriggerScheduleRequest(name=name), timeout=RPC_TIMEOUT, metadata=as_team("team-a")
    ).workflow
    coordinator_stub = token_coordinator.stub
    assert get_workflow(coordinator_stub, started.workflow_id, as_team("team-a")).name == (
        "team.a.flow"
    )
    err = rpc_error(lambda: get_workflow(coordinator_stub, started.workflow_id, as_team("team-b")))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    # Pausing or deleting in one namespace leaves the other's alone.
    stub.PauseSchedule(
        spb.PauseScheduleRequest(name=name), timeout=RPC_TIMEOUT, metadata=as_team("team-a")
    )
    assert not get_schedule(stub, name, as_team("team-b")).schedule.paused
    stub.DeleteSchedule(
        spb.DeleteScheduleRequest(name=name), timeout=RPC_TIMEOUT, metadata=as_team("team-a")
    )
    assert get_schedule(stub, name, as_team("team-b")).schedule.spec.name == name
    err = rpc_error(lambda: get_schedule(stub, name, as_team("team-a")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    stub.DeleteSchedule(
        spb.DeleteScheduleRequest(name=name), timeout=RPC_TIMEOUT, metadata=as_team("team-b")
    )

    # Without a token: refused, like every other call.
    err = rpc_error(lambda: get_schedule(stub, name))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# --- catch-up after downtime ---------------------------------------------------------------

# A schedule at one fixed second of every minute, the one furthest from the moment the
# downtime is simulated: no tick is due within ON_TIME of the restart, so every tick the
# restart starts is a missed one and the policies can be told apart exactly.
DOWNTIME = timedelta(hours=3)  # 180 missed minute ticks: more than MAX_CATCH_UP
SHORT_DOWNTIME = timedelta(minutes=5)  # 5 missed ticks: under the bound


@dataclass(frozen=True)
class Downtime:
    """What one restart after a simulated downtime did, by schedule."""

    restarted_at: datetime  # the database clock when the pass over them had happened
    missed: dict[str, list[datetime]]  # the ticks each schedule missed, oldest first
    started: dict[str, list[Tick]]


@pytest.fixture(scope="module")
def downtime(postgres_url: str) -> Iterator[Downtime]:
    """Schedules of each policy on a database of their own; their coordinator is stopped,
    their rows are set back as if it had been down for a while (`ticked_until` and
    `next_tick_at`, as a coordinator that stopped then would have left them), and a new
    coordinator is started on the database."""
    url = create_database(postgres_url)
    try:
        yield _simulate_downtime(url)
    finally:
        drop_database(postgres_url, url)


POLICIES = {
    "skip": (spb.CATCH_UP_POLICY_SKIP, DOWNTIME),
    "latest": (spb.CATCH_UP_POLICY_LATEST, DOWNTIME),
    "all": (spb.CATCH_UP_POLICY_ALL, DOWNTIME),
    "all-short": (spb.CATCH_UP_POLICY_ALL, SHORT_DOWNTIME),
    "unspecified": (spb.CATCH_UP_POLICY_UNSPECIFIED, DOWNTIME),
}


def _simulate_downtime(url: str) -> Downtime:
    watcher = Activity(url)
    try:
        with running_coordinator(url) as first:
            stub = spb_grpc.ScheduleServiceStub(first.channel)
            second = (watcher.now().second + 30) % 60
            cron = f"{second} * * * * *"
            for label, (policy, _) in POLICIES.items():
                set_schedule(
                    stub, spec(f"catch-up-{label}", cron, f"tests.{label}", catch_up=policy)
                )
        # The coordinator has stopped: "down since" each schedule's chosen time.
        now = watcher.now()
        parsed = Cron.parse(cron, "UTC")
        missed: dict[str, list[datetime]] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            for label, (_, length) in POLICIES.items():
                down_since = now - length
                missed[label] = parsed.upcoming(down_since, now, 10_000)
                conn.execute(
                    """UPDATE durable.schedules SET ticked_until = %s, next_tick_at = %s
                        WHERE name = %s""",
                    (down_since, parsed.next_tick(down_since, None), f"catch-up-{label}"),
                )

        def caught_up() -> bool:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM durable.schedules WHERE ticked_until < %s", (now,)
                ).fetchone()
            return row is not None and row[0] == 0

        with running_coordinator(url):
            # Bounded: the new coordinator's first pass moves every schedule past `now`.
            eventually(caught_up, timeout=TICK_WAIT)
            restarted_at = watcher.now()
            started = {label: ticks_of(url, f"catch-up-{label}") for label in POLICIES}
        return Downtime(restarted_at, missed, started)
    finally:
        watcher.close()


def test_downtime_has_no_tick_on_time_at_the_restart(downtime: Downtime) -> None:
    """The premise of the catch-up tests: every tick the restart saw was missed."""
    for label, missed in downtime.missed.items():
        assert missed, label
        assert downtime.restarted_at - missed[-1] > ON_TIME, label
        assert downtime.restarted_at - missed[-1] < timedelta(minutes=1), label


@pytest.mark.parametrize("label", ["skip", "unspecified"])
def test_skip_starts_none_of_the_missed_ticks(downtime: Downtime, label: str) -> None:
    assert downtime.started[label] == []


def test_latest_starts_one_workflow_for_the_most_recent_missed_tick(downtime: Downtime) -> None:
    [tick] = downtime.started["latest"]
    assert tick.scheduled_at == downtime.missed["latest"][-1]
    assert tick.workflow_id == tick_workflow_id("catch-up-latest", tick.scheduled_at)
    assert tick.status == "ENQUEUED"


def test_all_starts_every_missed_tick_when_few(downtime: Downtime) -> None:
    started = downtime.started["all-short"]
    assert len(downtime.missed["all-short"]) == 5
    assert [t.scheduled_at for t in started] == downtime.missed["all-short"]


def test_all_starts_at_most_the_100_most_recent_missed_ticks(downtime: Downtime) -> None:
    started = downtime.started["all"]
    missed = downtime.missed["all"]
    assert len(missed) == 180
    assert len(started) == MAX_CATCH_UP
    assert [t.scheduled_at for t in started] == missed[-MAX_CATCH_UP:]
    ids = [t.workflow_id for t in started]
    assert ids == [tick_workflow_id("catch-up-all", t) for t in missed[-MAX_CATCH_UP:]]
    assert all(t.status == "ENQUEUED" for t in started)
