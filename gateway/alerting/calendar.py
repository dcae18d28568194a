"""The working calendar of escalation timers (reference: clinical-alerting.md §3.3): pure, no I/O.

Danish telemonitoring programmes are reviewed on working days, not watched at weekends or on
public holidays (TeleHjerte: "no monitoring at weekends or on holidays"), so an escalation
timer's clock runs only while the calendar is open:

* ``always`` — every minute counts;
* ``working_days`` — Monday to Friday, whole local days, except Danish public holidays
  (the ``holidays`` package: Easter, Ascension, Whit Monday, Christmas …);
* ``working_hours`` — the same days, from ``opens`` to ``closes`` local time (08:00-15:30).

Times are the region's wall clock; DST days are exact (:func:`adherence.local_instant`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import holidays

from gateway.alerting.adherence import local_instant

REGION: Final = ZoneInfo("Europe/Copenhagen")
OPENS: Final = time(8)
CLOSES: Final = time(15, 30)
#: how far ahead :meth:`Calendar.add` looks for open time before it gives up
HORIZON_DAYS: Final = 400


class CalendarKind(enum.Enum):
    ALWAYS = "always"
    WORKING_DAYS = "working_days"
    WORKING_HOURS = "working_hours"


def danish_holidays(years: range) -> frozenset[date]:
    return frozenset(holidays.country_holidays("DK", years=list(years)).keys())


@dataclass(frozen=True, slots=True)
class Calendar:
    kind: CalendarKind
    tz: ZoneInfo = REGION
    opens: time = OPENS
    closes: time = CLOSES
    closed_days: frozenset[date] = field(default_factory=frozenset)  # holidays

    @classmethod
    def danish(cls, kind: CalendarKind, years: range | None = None) -> Calendar:
        now = datetime.now(UTC).year
        return cls(kind, closed_days=danish_holidays(years or range(now - 1, now + 3)))

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self.closed_days

    def open_span(self, d: date) -> tuple[datetime, datetime] | None:
        """The UTC span of local day ``d`` during which the clock runs (None: closed)."""
        if self.kind is CalendarKind.ALWAYS:
            return local_instant(d, time(0), self.tz), local_instant(
                d + timedelta(days=1), time(0), self.tz
            )
        if not self.is_working_day(d):
            return None
        if self.kind is CalendarKind.WORKING_DAYS:
            return local_instant(d, time(0), self.tz), local_instant(
                d + timedelta(days=1), time(0), self.tz
            )
        return local_instant(d, self.opens, self.tz), local_instant(d, self.closes, self.tz)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of open calendar time has passed since ``start``."""
        if self.kind is CalendarKind.ALWAYS:
            return start + duration
        left = duration
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        for _ in range(HORIZON_DAYS):
            span = self.open_span(day)
            day += timedelta(days=1)
            if span is None:
                continue
            lo, hi = max(span[0], start), span[1]
            if hi <= lo:
                continue
            if left <= hi - lo:
                return lo + left
            left -= hi - lo
        raise ValueError(f"no {duration} of open calendar time within {HORIZON_DAYS} days")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open calendar time between ``start`` and ``end``."""
        if end <= start:
            return timedelta(0)
        if self.kind is CalendarKind.ALWAYS:
            return end - start
        total = timedelta(0)
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date()
        while day <= last:
            span = self.open_span(day)
            day += timedelta(days=1)
            if span is not None:
                lo, hi = max(span[0], start), min(span[1], end)
                if hi > lo:
                    total += hi - lo
        return total
