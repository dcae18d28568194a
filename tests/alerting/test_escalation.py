"""Escalation on the Danish working calendar: calendar arithmetic over Easter 2026, weekends and
DST, and the sweep against PostgreSQL with a simulated clock (each step once, stopped by
acknowledge, a not-resolved step still firing, snooze waiting, late alerts never escalating)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from gateway.alerting import store
from gateway.alerting.calendar import Calendar, CalendarKind, danish_holidays
from gateway.alerting.escalation import EscalateWhen, Policy, Step
from gateway.alerting.model import AlertLevel, AlertState, Finding
from gateway.fleet import EscalationIn, EscalationStepIn, apply_fleet
from gateway.notify.escalation import sweep
from tests.gateway.api_support import FLEET, seed

pytestmark = pytest.mark.integration

CAL = {k: Calendar.danish(k, years=range(2025, 2028)) for k in CalendarKind}


def _cph(d: date, h: int, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), tzinfo=CAL[CalendarKind.ALWAYS].tz).astimezone(UTC)


def test_easter_2026_is_closed() -> None:
    closed = danish_holidays(range(2026, 2027))
    assert {date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 6)} <= closed  # Maundy Th., Good F.
    days = CAL[CalendarKind.WORKING_DAYS]
    # raised on Maundy Thursday: the clock starts on Tuesday after Easter Monday
    assert days.add(_cph(date(2026, 4, 2), 10), timedelta(hours=1)) == _cph(date(2026, 4, 7), 1)
    hours = CAL[CalendarKind.WORKING_HOURS]
    # Wednesday 15:00: 30 min that day, the rest from 08:00 on the next working day
    assert hours.add(_cph(date(2026, 4, 1), 15), timedelta(hours=2)) == _cph(
        date(2026, 4, 7), 9, 30
    )
    assert hours.elapsed(_cph(date(2026, 4, 1), 15), _cph(date(2026, 4, 7), 9, 30)) == timedelta(
        hours=2
    )
    # Friday afternoon to Monday: the weekend does not count
    assert hours.add(_cph(date(2026, 3, 27), 15), timedelta(hours=1)) == _cph(
        date(2026, 3, 30), 8, 30
    )  # and the DST change on the Sunday in between changes nothing on the wall clock
    always = CAL[CalendarKind.ALWAYS]
    assert always.add(_cph(date(2026, 4, 2), 10), timedelta(hours=1)) == _cph(date(2026, 4, 2), 11)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Step(timedelta(0), EscalateWhen.NOT_ACKNOWLEDGED, "lead")
    with pytest.raises(ValueError, match="notify"):
        Step(timedelta(hours=1), EscalateWhen.NOT_ACKNOWLEDGED, " ")
    two = Step(timedelta(hours=2), EscalateWhen.NOT_ACKNOWLEDGED, "b")
    one = Step(timedelta(hours=1), EscalateWhen.NOT_ACKNOWLEDGED, "a")
    with pytest.raises(ValueError, match="in order"):
        Policy(AlertLevel.RED, CalendarKind.WORKING_HOURS, (two, one))
    with pytest.raises(ValueError):
        EscalationIn(level="red", steps=[])
    with pytest.raises(ValueError):
        EscalationIn.model_validate(
            {"level": "purple", "steps": [{"after_minutes": 5, "notify": "x"}]}
        )


RED_POLICY = EscalationIn(
    level="red",
    calendar="working_hours",
    steps=[
        EscalationStepIn(after_minutes=60, when="not_acknowledged", notify="care-team lead"),
        EscalationStepIn(after_minutes=240, when="not_resolved", notify="chief physician"),
    ],
)
T0 = _cph(date(2026, 4, 1), 14)  # Wednesday before Easter, 14:00


def _finding(key: str, *, late: bool = False, rule: str = "S1") -> Finding:
    return Finding("p-001", rule, 1, AlertLevel.RED, AlertState.OPEN, key, T0, Decimal("85"),
                   "%", late, "SpO2 low", {})  # fmt: skip


async def _raise(dsn: str, f: Finding) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        applied = await store.apply_finding(conn, f, T0)
        await conn.commit()
    return applied.alert_id


async def _sweep(dsn: str, now: datetime) -> list[tuple[int, int, str]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return [(f.alert_id, f.step, f.notify) for f in await sweep(conn, now, CAL)]


def _events(dsn: str, alert: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT actor, payload ->> 'step', payload ->> 'notify_whom' FROM alert_event "
            "WHERE alert_id = %s AND type = 'escalated' ORDER BY event_id",
            (alert,),
        ).fetchall()


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db, FLEET.model_copy(update={"escalations": [RED_POLICY]}))
    return fresh_db


async def test_steps_fire_once_on_the_working_calendar(db: str) -> None:
    alert = await _raise(db, _finding("k1"))
    late = await _raise(db, _finding("k2", late=True, rule="P"))
    # 14:00 + 60 working minutes = 15:00 the same day
    assert await _sweep(db, _cph(date(2026, 4, 1), 14, 59)) == []
    assert await _sweep(db, _cph(date(2026, 4, 1), 15)) == [(alert, 0, "care-team lead")]
    assert await _sweep(db, _cph(date(2026, 4, 1), 15, 5)) == []  # once
    # acknowledged: the not-acknowledged step is done; the not-resolved one still runs: 4 working
    # hours = 1.5 h on Wednesday, then Easter, then 2.5 h from Tuesday 08:00 = 10:30
    async with await psycopg.AsyncConnection.connect(db) as conn:
        await store.acknowledge(conn, alert, "Dr. Hansen", "called", T0)
        await conn.commit()
    assert await _sweep(db, _cph(date(2026, 4, 6), 23)) == []  # Easter Monday: closed
    assert await _sweep(db, _cph(date(2026, 4, 7), 10, 29)) == []
    assert await _sweep(db, _cph(date(2026, 4, 7), 10, 30)) == [(alert, 1, "chief physician")]
    assert _events(db, alert) == [("telehub", "1", "care-team lead"),
                                  ("telehub", "2", "chief physician")]  # fmt: skip
    assert _events(db, late) == []  # a late alert never escalates
    with psycopg.connect(db) as conn:  # escalations are delivered (fan-out) like the alert
        notifiable = conn.execute(
            "SELECT bool_and(telehub_event_notifiable(e)) FROM alert_event e "
            "WHERE e.type = 'escalated'"
        ).fetchone()
    assert notifiable == (True,)


async def test_snooze_waits_and_a_policy_change_does_not_touch_alerts_in_flight(db: str) -> None:
    alert = await _raise(db, _finding("k1"))
    assert await _sweep(db, _cph(date(2026, 4, 1), 14, 1)) == []  # snapshot taken
    async with await psycopg.AsyncConnection.connect(db) as conn:
        await store.snooze(conn, alert, actor="nurse", until=_cph(date(2026, 4, 1), 15, 30),
                           reason="patient resting", at=T0)  # fmt: skip
        await conn.commit()
    assert await _sweep(db, _cph(date(2026, 4, 1), 15, 10)) == []  # due, but snoozed
    # the policy is removed from the fleet: the alert keeps the one it started with
    with psycopg.connect(db) as conn:
        apply_fleet(conn, FLEET)
        assert conn.execute("SELECT count(*) FROM escalation_policies").fetchone() == (0,)
    assert await _sweep(db, _cph(date(2026, 4, 1), 15, 31)) == [(alert, 0, "care-team lead")]
    # a new alert after the change has no policy
    new = await _raise(db, _finding("k9", rule="B4"))
    fired = await _sweep(db, _cph(date(2026, 4, 8), 15))
    assert fired == [(alert, 1, "chief physician")]  # the old alert's snapshot still runs
    assert _events(db, new) == []
