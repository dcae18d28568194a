"""A1, the missed scheduled measurement (reference: clinical-alerting.md A1, OpenTele's blue
alarm): pure functions, no I/O. The sweep that uses them is :mod:`gateway.notify.adherence`.

A measurement plan (:class:`gateway.alerting.model.MissingParams`) lists slots in the patient's
local wall-clock time. :func:`windows` turns them into UTC windows for the local days that a
time range touches, exactly on DST days: a slot time the spring change skips (02:30 in Denmark
on the last Sunday of March) is the first instant after the gap (03:00 CEST), a time the autumn
change repeats is its first occurrence (summer time). A window is *missed* when no reading that
:func:`counts` falls in ``[opens, closes)``, ``closes`` being the deadline plus the grace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.alerting import gating
from gateway.alerting.model import Gate, MissingParams, Observation

#: gates that count as "measured": a meter's HI/LO is beyond range, never missing (G5)
MEASURED_GATES = frozenset({Gate.VALID, Gate.ABOVE_RANGE, Gate.BELOW_RANGE})


@dataclass(frozen=True, slots=True, order=True)
class Window:
    closes: datetime  # UTC: deadline + grace (windows sort by it)
    opens: datetime  # UTC
    deadline: datetime  # UTC
    day: date  # the patient-local day of the slot
    slot: int  # index in the plan

    @property
    def token(self) -> str:
        """Stable id of this slot occurrence (the alert occurrence's reading key)."""
        return f"missed:{self.day.isoformat()}#{self.slot}"


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``tz`` as UTC. Skipped by a DST change: the first instant
    after the gap; repeated: the first occurrence."""
    naive = datetime.combine(day, at)
    for minutes in range(0, 24 * 60):
        candidate = naive + timedelta(minutes=minutes)
        aware = candidate.replace(tzinfo=tz, fold=0)
        utc = aware.astimezone(UTC)
        if utc.astimezone(tz).replace(tzinfo=None) == candidate:  # exists on the wall clock
            return utc  # the first wall-clock minute after a gap is the transition itself
    raise ValueError(f"no wall-clock time {at} on {day} in {tz}")  # pragma: no cover


def windows(p: MissingParams, tz: ZoneInfo, after: datetime, until: datetime) -> list[Window]:
    """The slot windows that close in ``(after, until]``, in closing order."""
    out: list[Window] = []
    first = after.astimezone(tz).date() - timedelta(days=1)
    last = until.astimezone(tz).date()
    day = first
    while day <= last:
        for i, s in enumerate(p.slots):
            if day.weekday() not in s.weekdays:
                continue
            opens = local_instant(day, s.start, tz)
            deadline = local_instant(day, s.deadline, tz)
            closes = deadline + p.grace
            if after < closes <= until:
                out.append(Window(closes, opens, deadline, day, i))
        day += timedelta(days=1)
    return sorted(out)


def counts(obs: Observation) -> bool:
    """Whether a reading satisfies a slot: valid, or a meter's HI/LO (not excluded, not a
    measurement the device flagged for repeating, not test data)."""
    return gating.gate(obs) in MEASURED_GATES


def met(w: Window, measured: Sequence[datetime] | Iterable[datetime]) -> bool:
    """Whether a reading that counts (its effective time in ``measured``) falls in ``w``."""
    return any(w.opens <= t < w.closes for t in measured)
