"""Cron arithmetic without I/O (coordinator/schedules/cron.py): reading expressions and time
zones, ticks across daylight-saving changes, which due ticks each catch-up policy starts,
and the tick's workflow ID."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import pairwise, takewhile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.schedules.cron import (
    MAX_CATCH_UP,
    ON_TIME,
    CatchUp,
    Cron,
    CronError,
    due_ticks,
    tick_workflow_id,
)

UTC = timezone.utc
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def ticks(expression: str, after: datetime, count: int, zone: str = "UTC") -> list[datetime]:
    return Cron.parse(expression, zone).upcoming(after, None, count)


# --- parsing ---------------------------------------------------------------------------


def test_five_fields_are_minute_hour_day_month_weekday() -> None:
    assert ticks("30 4 * * *", utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 4, 30),
        utc(2026, 1, 2, 4, 30),
    ]
    cron = Cron.parse("30 4 * * *", "")
    assert not cron.has_seconds
    assert cron.zone.key == "UTC"  # empty means UTC


def test_six_fields_have_seconds_first() -> None:
    cron = Cron.parse("*/15 * * * * *", "UTC")
    assert cron.has_seconds
    assert cron.upcoming(utc(2026, 1, 1), None, 5) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
        utc(2026, 1, 1, 0, 1, 0),
        utc(2026, 1, 1, 0, 1, 15),
    ]
    # Six fields are seconds first, never a trailing year.
    assert ticks("7 30 4 * * *", utc(2026, 1, 1), 1) == [utc(2026, 1, 1, 4, 30, 7)]


def test_whitespace_between_fields_is_normalised() -> None:
    assert Cron.parse("  0   2 * *\t* ", "UTC").expression == "0 2 * * *"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Month and day names, any case; ranges and lists of names.
        ("0 9 * JAN-MAR MON-FRI", utc(2026, 3, 27), [utc(2026, 3, 27, 9), utc(2026, 3, 30, 9)]),
        ("0 12 * * sun,sat", utc(2026, 1, 1), [utc(2026, 1, 3, 12), utc(2026, 1, 4, 12)]),
        ("0 0 1 jan,jul *", utc(2026, 1, 1), [utc(2026, 7, 1), utc(2027, 1, 1)]),
        # Ranges with steps, and lists.
        ("0-59/20 * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 20), utc(2026, 1, 1, 0, 40)]),
        ("5,35 10-11 * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 35)]),
        ("0 */6 * * *", utc(2026, 1, 1, 1), [utc(2026, 1, 1, 6), utc(2026, 1, 1, 12)]),
        # Sunday is 0 or 7.
        ("0 0 * * 7", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("0 0 * * 0", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        # February 29th only in leap years; the last second of a year.
        ("0 0 29 2 *", utc(2026, 1, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
        ("59 59 23 31 12 *", utc(2026, 1, 1), [utc(2026, 12, 31, 23, 59, 59)]),
    ],
)
def test_names_ranges_steps_and_lists(
    expression: str, after: datetime, expected: list[datetime]
) -> None:
    assert ticks(expression, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 32 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("60 * * * * *", "out of range"),
        ("foo * * * *", "not acceptable"),
        ("* * * JANX *", "not acceptable"),
        ("*/0 * * * *", "step"),
        ("0 0 31 2 *", "failed to find next date"),  # February 31st never comes
        # Hashed and random fields would give each coordinator other ticks.
        ("H * * * *", "hash_id"),
        ("R * * * *", "random"),
        ("0 r * * *", "random"),
        ("R(0-30)/5 * * * *", "random"),
    ],
)
def test_invalid_expressions_raise_cron_error_saying_why(expression: str, words: str) -> None:
    with pytest.raises(CronError) as caught:
        Cron.parse(expression, "UTC")
    assert words in str(caught.value)


def test_names_containing_r_are_not_random_fields() -> None:
    assert ticks("0 0 * mar fri", utc(2026, 1, 1), 1) == [utc(2026, 3, 6)]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "utc", "+02:00", "Europe/Paris ", "../etc"])
def test_unknown_time_zones_raise_cron_error_naming_the_zone(zone: str) -> None:
    with pytest.raises(CronError) as caught:
        Cron.parse("0 2 * * *", zone)
    assert str(caught.value) == f"unknown IANA time zone {zone!r}"


def test_an_expression_is_read_in_its_time_zone() -> None:
    # 09:00 in Tokyo (UTC+9, no daylight saving) is midnight UTC.
    assert ticks("0 9 * * *", utc(2026, 6, 1), 2, "Asia/Tokyo") == [
        utc(2026, 6, 2),
        utc(2026, 6, 3),
    ]
    # 09:00 in New York is 14:00 UTC in winter and 13:00 in summer.
    assert ticks("0 9 15 1,7 *", utc(2026, 1, 1), 2, "America/New_York") == [
        utc(2026, 1, 15, 14),
        utc(2026, 7, 15, 13),
    ]


# --- daylight-saving changes (Europe/Paris, 2026: March 29th and October 25th) --------------


def test_two_oclock_in_paris_keeps_local_time_across_the_changes() -> None:
    # Winter: 02:00 CET is 01:00 UTC; summer: 02:00 CEST is 00:00 UTC.
    before = ticks("0 2 * * *", utc(2026, 3, 26), 2, "Europe/Paris")
    assert before == [utc(2026, 3, 26, 1), utc(2026, 3, 27, 1)]
    after = ticks("0 2 * * *", utc(2026, 3, 31, 12), 2, "Europe/Paris")
    assert after == [utc(2026, 4, 1, 0), utc(2026, 4, 2, 0)]


def test_a_time_skipped_by_spring_forward_runs_once_at_the_first_time_after() -> None:
    # March 29th 2026 in Paris: 02:00 CET jumps to 03:00 CEST, so 02:00 and 02:30 do not
    # exist. croniter runs such a tick once, at 03:00 CEST (01:00 UTC): no day is skipped,
    # none runs twice, and the next day is back at the local time.
    for expression, normal_winter, normal_summer in [
        ("0 2 * * *", utc(2026, 3, 28, 1), utc(2026, 3, 30, 0)),
        ("30 2 * * *", utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)),
    ]:
        found = ticks(expression, utc(2026, 3, 28), 3, "Europe/Paris")
        assert found == [normal_winter, utc(2026, 3, 29, 1), normal_summer], expression


def test_a_time_repeated_by_fall_back_runs_at_both_instants() -> None:
    # October 25th 2026 in Paris: 03:00 CEST goes back to 02:00 CET, so 02:00 happens
    # twice. croniter gives both instants (00:00 and 01:00 UTC): two ticks, one hour apart,
    # with two distinct workflow IDs (UTC), so each is still started exactly once. This is
    # what croniter does (Vixie cron would run a fixed-time job once); recorded here so a
    # change of it is seen.
    found = ticks("0 2 * * *", utc(2026, 10, 24, 12), 3, "Europe/Paris")
    assert found == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 26, 1)]
    ids = {tick_workflow_id("nightly", tick) for tick in found}
    assert len(ids) == 3


def test_every_minute_across_a_change_has_no_gap_and_no_repeat_in_utc() -> None:
    cron = Cron.parse("* * * * *", "Europe/Paris")
    for change in (utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)):
        found = cron.upcoming(change - 5 * MINUTE, None, 10)
        assert found == [change - 4 * MINUTE + i * MINUTE for i in range(10)]


def test_ticks_before_a_moment_walk_back_across_a_change() -> None:
    cron = Cron.parse("0 2 * * *", "Europe/Paris")
    back = cron.before(utc(2026, 10, 26, 12))
    assert [next(back) for _ in range(3)] == [
        utc(2026, 10, 26, 1),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 0),
    ]


# --- next ticks and the end -------------------------------------------------------------


def test_next_tick_and_upcoming_stop_at_the_end() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    start = utc(2026, 1, 1)
    assert cron.next_tick(start, None) == utc(2026, 1, 1, 1)
    assert cron.next_tick(start, utc(2026, 1, 1, 1)) is None  # no tick at or after the end
    assert cron.upcoming(start, utc(2026, 1, 1, 3, 30), 5) == [
        utc(2026, 1, 1, 1),
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]


def test_ticks_after_a_moment_are_strictly_after_it() -> None:
    cron = Cron.parse("* * * * * *", "UTC")
    tick = utc(2026, 1, 1, 0, 0, 5)
    assert next(cron.after(tick)) == tick + SECOND
    assert next(cron.after(tick - timedelta(microseconds=1))) == tick
    assert next(cron.before(tick)) == tick - SECOND


# --- due ticks: normal operation --------------------------------------------------------

EVERY_SECOND = Cron.parse("* * * * * *", "UTC")
EVERY_MINUTE = Cron.parse("* * * * *", "UTC")
T0 = utc(2026, 1, 1, 12)


@pytest.mark.parametrize("policy", list(CatchUp))
def test_on_time_ticks_start_whatever_the_policy(policy: CatchUp) -> None:
    # A pass right after a tick, or a little late (busy, restarting): the ticks since the
    # last pass, and only those.
    assert due_ticks(EVERY_SECOND, T0, T0 + timedelta(milliseconds=3), policy) == []
    assert due_ticks(EVERY_SECOND, T0, T0 + SECOND, policy) == [T0 + SECOND]
    late = T0 + 4 * SECOND + timedelta(milliseconds=500)
    assert due_ticks(EVERY_SECOND, T0, late, policy) == [T0 + i * SECOND for i in (1, 2, 3, 4)]
    # Nothing twice: the next pass starts after the last one's now.
    assert due_ticks(EVERY_SECOND, late, late + SECOND, policy) == [T0 + 5 * SECOND]


@pytest.mark.parametrize("policy", list(CatchUp))
def test_a_tick_exactly_on_time_late_is_still_on_time(policy: CatchUp) -> None:
    now = T0 + ON_TIME
    assert due_ticks(EVERY_MINUTE, T0 - SECOND, now, policy) == [T0]
    # A microsecond later it is missed: SKIP drops it.
    later = due_ticks(EVERY_MINUTE, T0 - SECOND, now + timedelta(microseconds=1), policy)
    assert later == ([] if policy is CatchUp.SKIP else [T0])


def test_nothing_is_due_when_now_is_not_after_done_until() -> None:
    for policy in CatchUp:
        assert due_ticks(EVERY_SECOND, T0, T0, policy) == []
        assert due_ticks(EVERY_SECOND, T0, T0 - MINUTE, policy) == []


# --- due ticks: after downtime ----------------------------------------------------------

# Down for an hour: every-minute ticks from T0 + 1 min to T0 + 60 min were missed; the pass
# is 5 s after the last of them, so that one is on time.
DOWN_UNTIL = T0 + timedelta(hours=1, seconds=5)


def test_skip_starts_none_of_the_missed_ticks() -> None:
    assert due_ticks(EVERY_MINUTE, T0, DOWN_UNTIL, CatchUp.SKIP) == [T0 + 60 * MINUTE]
    # 30 s after the last tick: nothing at all.
    later = T0 + timedelta(hours=1, seconds=30)
    assert due_ticks(EVERY_MINUTE, T0, later, CatchUp.SKIP) == []


def test_latest_starts_only_the_most_recent_missed_tick() -> None:
    later = T0 + timedelta(hours=1, seconds=30)
    assert due_ticks(EVERY_MINUTE, T0, later, CatchUp.LATEST) == [T0 + 60 * MINUTE]


def test_latest_starts_no_missed_tick_when_one_is_on_time() -> None:
    # The on-time tick is the most recent run already.
    assert due_ticks(EVERY_MINUTE, T0, DOWN_UNTIL, CatchUp.LATEST) == [T0 + 60 * MINUTE]
    down = T0 + timedelta(minutes=5, seconds=2)
    # Ticks from 10 s before now are on time: seconds 292 to 302.
    assert due_ticks(EVERY_SECOND, T0, down, CatchUp.LATEST) == [
        T0 + s * SECOND for s in range(292, 303)
    ]


def test_all_starts_every_missed_tick_oldest_first() -> None:
    assert due_ticks(EVERY_MINUTE, T0, DOWN_UNTIL, CatchUp.ALL) == [
        T0 + i * MINUTE for i in range(1, 61)
    ]


def test_all_is_bounded_keeping_the_most_recent_missed_ticks() -> None:
    done = T0 - timedelta(days=1)
    found = due_ticks(EVERY_MINUTE, done, DOWN_UNTIL, CatchUp.ALL)
    # 100 missed (the most recent, up to 10 s before now) plus the one on time.
    assert len(found) == MAX_CATCH_UP + 1
    assert found == [T0 + 60 * MINUTE - i * MINUTE for i in range(MAX_CATCH_UP, -1, -1)]


def test_all_after_a_long_downtime_of_an_every_second_schedule() -> None:
    now = T0 + timedelta(hours=2, milliseconds=250)
    found = due_ticks(EVERY_SECOND, T0, now, CatchUp.ALL)
    on_time = [t for t in found if t >= now - ON_TIME]
    missed = [t for t in found if t < now - ON_TIME]
    assert len(on_time) == 10 and len(missed) == MAX_CATCH_UP
    # Contiguous seconds up to now: the bound cuts only the oldest.
    assert found == [found[0] + i * SECOND for i in range(len(found))]
    assert found[-1] == T0 + timedelta(hours=2)


# --- due ticks: the end -----------------------------------------------------------------


@pytest.mark.parametrize("policy", list(CatchUp))
def test_no_tick_at_or_after_the_end(policy: CatchUp) -> None:
    end = T0 + 3 * SECOND
    found = due_ticks(EVERY_SECOND, T0, T0 + 5 * SECOND, policy, end=end)
    assert found == [T0 + SECOND, T0 + 2 * SECOND]


def test_an_end_passed_during_downtime_leaves_its_last_ticks_missed() -> None:
    # Down across the end, back an hour after it: the ticks just before the end are an
    # hour late, not on time.
    end = T0 + 100 * SECOND
    now = end + timedelta(hours=1)
    assert due_ticks(EVERY_SECOND, T0, now, CatchUp.SKIP, end=end) == []
    assert due_ticks(EVERY_SECOND, T0, now, CatchUp.LATEST, end=end) == [end - SECOND]
    assert due_ticks(EVERY_SECOND, T0, now, CatchUp.ALL, end=end) == [
        T0 + i * SECOND for i in range(1, 100)
    ]


# --- properties -------------------------------------------------------------------------

EXPRESSIONS = [
    "* * * * * *",
    "*/7 * * * * *",
    "0 * * * * *",
    "* * * * *",
    "*/5 * * * *",
    "0 * * * *",
    "15,45 * * * *",
    "0 2 * * *",
    "30 2 * * *",
]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]


@settings(max_examples=300, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(ZONES),
    done_until=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    policy=st.sampled_from(list(CatchUp)),
    end_after=st.one_of(
        st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4))
    ),
)
def test_due_ticks_are_increasing_in_range_bounded_and_never_repeat(
    expression: str,
    zone: str,
    done_until: datetime,
    gap: timedelta,
    policy: CatchUp,
    end_after: timedelta | None,
) -> None:
    cron = Cron.parse(expression, zone)
    now = done_until + gap
    end = None if end_after is None else done_until + end_after
    found = due_ticks(cron, done_until, now, policy, end=end)
    assert all(a < b for a, b in pairwise(found))
    assert all(done_until < tick <= now for tick in found)
    assert end is None or all(tick < end for tick in found)
    assert len({tick_workflow_id("s", tick) for tick in found}) == len(found)
    # Every on-time tick in range is there, whatever the policy, after the missed ones.
    late_line = now - ON_TIME
    upper = now if end is None else min(now, end - timedelta(microseconds=1))
    expected_on_time = list(
        takewhile(
            lambda t: t <= upper,
            cron.after(max(done_until, late_line - timedelta(microseconds=1))),
        )
    )
    missed = [t for t in found if t < late_line]
    assert found[len(missed) :] == expected_on_time
    assert len(missed) <= {CatchUp.SKIP: 0, CatchUp.LATEST: 1, CatchUp.ALL: MAX_CATCH_UP}[policy]
    if policy is CatchUp.LATEST and expected_on_time:
        assert missed == []
    # A second pass right after it starts nothing again.
    assert not set(found) & set(due_ticks(cron, now, now + SECOND, policy, end=end))


@settings(max_examples=200, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    steps=st.lists(
        st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(seconds=9)),
        min_size=1,
        max_size=40,
    ),
)
def test_passes_on_time_start_every_tick_exactly_once(
    expression: str, zone: str, start: datetime, steps: list[timedelta]
) -> None:
    """Passes that come at most ON_TIME apart start exactly the cron's ticks, once each,
    whatever the policy: nothing on time is ever dropped or doubled."""
    cron = Cron.parse(expression, zone)
    for policy in CatchUp:
        done, started = start, []
        for step in steps:
            now = done + step
            started += due_ticks(cron, done, now, policy)
            done = now
        assert started == cron.upcoming(start, done + timedelta(microseconds=1), len(started) + 1)


# --- the tick's workflow ID -------------------------------------------------------------


def test_tick_workflow_id_is_the_name_and_the_utc_second() -> None:
    assert tick_workflow_id("nightly-report", utc(2026, 12, 6, 2)) == (
        "nightly-report@2026-12-06T02:00:00Z"
    )
    paris = datetime(2026, 12, 6, 3, 0, 5, tzinfo=Cron.parse("* * * * *", "Europe/Paris").zone)
    assert tick_workflow_id("a.b:c", paris) == "a.b:c@2026-12-06T02:00:05Z"
