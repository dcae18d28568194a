"""Escalation policies (reference: clinical-alerting.md §3.3): pure decisions, no I/O. The sweep
that applies them is :mod:`gateway.notify.escalation`.

A policy is an ordered list of steps for the alerts of one level: after ``after`` of calendar
time (:mod:`gateway.alerting.calendar`) since the alert was created — or last re-opened — and
while the alert is still not acknowledged (``not_acknowledged``) or not resolved
(``not_resolved``), the step fires **once**: an ``escalated`` event naming whom it is for,
delivered like the alert. A snoozed alert's escalation waits; a late alert never escalates; a
pending one (awaiting confirmation) neither. The policy is snapshotted per alert, so editing it
does not change alerts in flight (GitLab #323139).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.alerting.calendar import Calendar, CalendarKind
from gateway.alerting.model import AlertLevel, AlertState


class EscalateWhen(enum.Enum):
    NOT_ACKNOWLEDGED = "not_acknowledged"
    NOT_RESOLVED = "not_resolved"


@dataclass(frozen=True, slots=True)
class Step:
    after: timedelta
    when: EscalateWhen
    notify: str  # whom: "care-team-lead", "on-call nurse", an e-mail list's name …

    def __post_init__(self) -> None:
        if self.after <= timedelta(0):
            raise ValueError("an escalation step's `after` must be positive")
        if not self.notify.strip():
            raise ValueError("an escalation step needs `notify` (whom it is for)")


@dataclass(frozen=True, slots=True)
class Policy:
    level: AlertLevel
    calendar: CalendarKind
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an escalation policy needs at least one step")
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in order of `after`")

    def encode(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "calendar": self.calendar.value,
            "steps": [
                {"after": s.after.total_seconds(), "when": s.when.value, "notify": s.notify}
                for s in self.steps
            ],
        }

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Policy:
        return cls(
            AlertLevel(raw["level"]),
            CalendarKind(raw["calendar"]),
            tuple(
                Step(timedelta(seconds=float(s["after"])), EscalateWhen(s["when"]), s["notify"])
                for s in raw["steps"]
            ),
        )


def applies(step: Step, state: AlertState) -> bool:
    if state is AlertState.OPEN:
        return True
    return state is AlertState.ACKNOWLEDGED and step.when is EscalateWhen.NOT_RESOLVED


def due_steps(
    policy: Policy,
    calendar: Calendar,
    *,
    started_at: datetime,
    now: datetime,
    state: AlertState,
    late: bool,
    snoozed_until: datetime | None,
    fired: Collection[int],
) -> list[tuple[int, datetime]]:
    """The steps (index, due time) to fire now for one alert."""
    if late or state in (AlertState.PENDING, AlertState.RESOLVED):
        return []
    if snoozed_until is not None and snoozed_until > now:
        return []
    out = []
    for i, step in enumerate(policy.steps):
        if i in fired or not applies(step, state):
            continue
        due = calendar.add(started_at, step.after)
        if due <= now:
            out.append((i, due))
    return out
