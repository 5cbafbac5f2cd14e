"""Cron arithmetic, without I/O: reading an expression in its time zone, the ticks after a
time, and which due ticks a catch-up policy starts.

croniter does the parsing and the calendar (lists, ranges, steps, names, day-of-month or
day-of-week, daylight-saving changes in the schedule's zone); this module only decides
which of its ticks to take.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

# A tick at most this late is on time: it always starts its workflow, whatever the
# catch-up policy (a busy or restarting coordinator is not downtime).
ON_TIME = timedelta(seconds=10)
# The most missed ticks CATCH_UP_POLICY_ALL starts after downtime (the most recent ones).
MAX_CATCH_UP = 100
# How many next tick times a schedule shows.
NEXT_TICKS_SHOWN = 5
# croniter's random fields ("R", "R(0-30)", "R/10") draw a new value each time an expression
# is read: every coordinator, and every pass, would name other ticks (missed or doubled).
_RANDOM_FIELD = re.compile(r"r(\(\d+-\d+\))?(/\d+)?", re.IGNORECASE | re.ASCII)
_MICROSECOND = timedelta(microseconds=1)


class CatchUp(str, enum.Enum):
    """What to do with ticks missed during downtime (see schedules.proto)."""

    SKIP = "SKIP"
    LATEST = "LATEST"
    ALL = "ALL"


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says why."""


@dataclass(frozen=True)
class Cron:
    """A cron expression read in a time zone."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, time_zone: str) -> Cron:
        """Raises CronError for an invalid expression (5 fields, or 6 with seconds first)
        or an unknown IANA time zone."""
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise CronError(
                f"expected 5 fields (minute hour day month weekday) or 6 with seconds first,"
                f" got {len(fields)}"
            )
        if any(_RANDOM_FIELD.fullmatch(field) for field in fields):
            raise CronError(
                "random fields ('R') are not supported: each coordinator would draw other ticks"
            )
        try:
            zone = ZoneInfo(time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown IANA time zone {time_zone!r}") from None
        cron = cls(" ".join(fields), zone)
        try:
            cron._iter(datetime.now(timezone.utc)).get_next(datetime)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronError(str(exc) or "invalid expression") from None
        return cron

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def _iter(self, start: datetime, *, backwards: bool = False) -> croniter:
        return croniter(
            self.expression,
            start.astimezone(self.zone),
            is_prev=backwards,
            second_at_beginning=self.has_seconds,
        )

    def after(self, moment: datetime) -> Iterator[datetime]:
        """The ticks strictly after `moment`, in order, as UTC times."""
        ticks = self._iter(moment)
        while True:
            tick: datetime = ticks.get_next(datetime)
            yield tick.astimezone(timezone.utc)

    def before(self, moment: datetime) -> Iterator[datetime]:
        """The ticks strictly before `moment`, newest first, as UTC times."""
        ticks = self._iter(moment, backwards=True)
        while True:
            tick: datetime = ticks.get_prev(datetime)
            yield tick.astimezone(timezone.utc)

    def next_tick(self, moment: datetime, end: datetime | None) -> datetime | None:
        """The first tick after `moment`, or None when the schedule ends (at `end`) first."""
        tick = next(self.after(moment))
        return None if end is not None and tick >= end else tick

    def upcoming(self, moment: datetime, end: datetime | None, count: int) -> list[datetime]:
        """Up to `count` ticks after `moment` and before `end`."""
        found: list[datetime] = []
        for tick in self.after(moment):
            if len(found) == count or (end is not None and tick >= end):
                break
            found.append(tick)
        return found


def due_ticks(
    cron: Cron,
    done_until: datetime,
    now: datetime,
    policy: CatchUp,
    *,
    end: datetime | None = None,
) -> list[datetime]:
    """The ticks to start now, oldest first: of the ticks after `done_until` and up to
    `now` (and before `end`), every on-time one (at most ON_TIME late), and of the missed
    ones (later than that) what `policy` says: none, the most recent, or all of them (at
    most MAX_CATCH_UP, the most recent)."""
    # Lateness is measured from the real now, not from the end: a tick just before an end
    # long past is late, not on time.
    late_line = now - ON_TIME  # a tick at or after this is on time
    if end is not None:
        now = min(now, end - _MICROSECOND)
    if now <= done_until:
        return []
    on_time = []
    for tick in cron.after(max(done_until, late_line - _MICROSECOND)):
        if tick > now:
            break
        on_time.append(tick)
    if late_line <= done_until or policy is CatchUp.SKIP:
        return on_time
    missed: list[datetime] = []
    # Newest first: the bound keeps the most recent, and LATEST wants only the first.
    for tick in cron.before(late_line if end is None else min(late_line, end)):
        if tick <= done_until or len(missed) == MAX_CATCH_UP:
            break
        missed.append(tick)
        if policy is CatchUp.LATEST:
            break
    if policy is CatchUp.LATEST and on_time:
        return on_time  # a tick on time is the most recent run already
    return list(reversed(missed)) + on_time


def tick_workflow_id(schedule_name: str, tick: datetime) -> str:
    """The ID of the workflow a schedule starts for `tick`: the same on every coordinator,
    so that a tick is started once. Seconds always shown; sub-second ticks do not exist."""
    return f"{schedule_name}@{tick.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
