"""A1, the missed scheduled measurement: slot windows in patient-local time (DST days exact),
and the sweep against real PostgreSQL with a simulated clock — met, missed (one blue alert,
occurrences, never paged), late data resolving it, a silent hub holding the decision, a
suppression window, gated readings that do not count, plan versions from the fleet file."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from gateway.alerting import adherence, gating
from gateway.alerting.model import Gate, MissingParams, Observation, Slot
from gateway.db import migrate
from gateway.fleet import Device, Fleet, Hub, Org, Patient, PlanItem, PlanSlot, apply_fleet
from gateway.notify.adherence import LATE_NOTE, SweepResult, sweep
from tests.gateway.api_support import insert_reading

TZ = ZoneInfo("Europe/Copenhagen")
WEIGHT = 188736
MORNING = MissingParams((Slot(time(7), time(10)),), timedelta(hours=1))


def _local(d: date, h: int, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), tzinfo=TZ).astimezone(UTC)


# -- pure -----------------------------------------------------------------------------------------


def test_local_times_on_dst_days() -> None:
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    # 02:30 does not exist on the spring day: the first instant after the gap (03:00 CEST)
    assert adherence.local_instant(spring, time(2, 30), TZ) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    # 02:30 happens twice on the autumn day: the first (summer time)
    assert adherence.local_instant(autumn, time(2, 30), TZ) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )
    assert adherence.local_instant(spring, time(7), TZ) == datetime(2026, 3, 29, 5, tzinfo=UTC)
    assert adherence.local_instant(autumn, time(7), TZ) == datetime(2026, 10, 25, 6, tzinfo=UTC)


def test_windows_follow_the_local_day_and_weekdays() -> None:
    after = datetime(2026, 3, 27, 23, tzinfo=UTC)
    ws = adherence.windows(MORNING, TZ, after, after + timedelta(days=3))
    assert [(w.day, w.opens, w.deadline, w.closes) for w in ws] == [
        (date(2026, 3, 28), datetime(2026, 3, 28, 6, tzinfo=UTC),
         datetime(2026, 3, 28, 9, tzinfo=UTC), datetime(2026, 3, 28, 10, tzinfo=UTC)),
        (date(2026, 3, 29), datetime(2026, 3, 29, 5, tzinfo=UTC),  # CEST from 03:00
         datetime(2026, 3, 29, 8, tzinfo=UTC), datetime(2026, 3, 29, 9, tzinfo=UTC)),
        (date(2026, 3, 30), datetime(2026, 3, 30, 5, tzinfo=UTC),
         datetime(2026, 3, 30, 8, tzinfo=UTC), datetime(2026, 3, 30, 9, tzinfo=UTC)),
    ]  # fmt: skip
    # (after, until]: a window closing exactly at `after` was decided by the sweep before
    assert adherence.windows(MORNING, TZ, ws[0].closes, ws[1].closes) == [ws[1]]
    weekdays = MissingParams((Slot(time(7), time(10), frozenset({0})),))  # Mondays only
    week = adherence.windows(weekdays, TZ, after, after + timedelta(days=7))
    assert [w.day.weekday() for w in week] == [0]
    with pytest.raises(ValueError, match="before its deadline"):
        Slot(time(10), time(7))
    with pytest.raises(ValueError, match="weekdays"):
        Slot(time(7), time(10), frozenset({7}))


@pytest.mark.parametrize(
    ("flags", "special", "kind", "counts"),
    [
        ((), None, "spot", True),
        (("result-too-high",), None, "spot", True),  # a meter's HI: beyond range, not missing
        (("body-movement",), None, "spot", False),  # a measurement to repeat
        (("data-for-testing",), None, "spot", False),
        ((), "nan", "spot", False),
        ((), None, "intermediate", False),
    ],
)
def test_which_readings_count(
    flags: tuple[str, ...], special: str | None, kind: str, counts: bool
) -> None:
    t = datetime(2026, 3, 28, 7, tzinfo=UTC)
    obs = Observation("k", "p1", WEIGHT, Decimal("80"), "kg", t, t, flags, special, kind)
    assert adherence.counts(obs) is counts
    assert (gating.gate(obs) in adherence.MEASURED_GATES) is counts
    assert Gate.VALID in adherence.MEASURED_GATES


# -- the sweep against PostgreSQL -----------------------------------------------------------------

D = date(2026, 3, 28)  # a Saturday; the next day is the spring DST change
PLAN = PlanItem(metric=WEIGHT, slots=[PlanSlot(start=time(7), deadline=time(10))])


def _fleet(plan: PlanItem = PLAN) -> Fleet:
    return Fleet(
        orgs=[Org(id="rh", name="Hospital", kind="hospital")],
        patients=[Patient(id="p1", orgs=["rh"], plan=[plan],  # in force from D's first slot
                          programmes_from=_local(D, 0))],
        hubs=[Hub(id="hub-1", org="rh")],
        devices=[Device(id="scale-1", hub="hub-1", patient="p1")],
    )  # fmt: skip


def _weigh(dsn: str, at: datetime, *, received: datetime | None = None, **over: Any) -> None:
    with psycopg.connect(dsn) as conn:
        insert_reading(
            conn, time=at, received_at=received or at + timedelta(seconds=5),
            key=f"w-{at.isoformat()}", patient_id="p1", hub_id="hub-1", device_id="scale-1",
            source="2a9d", kind="spot", mdc=WEIGHT, loinc=["29463-7"], unit="kg",
            mdc_unit=263875, value=Decimal("80.0"), **over,
        )  # fmt: skip


def _heard(dsn: str, at: datetime) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE hubs SET last_seen = %s", (at,))


async def _sweep(dsn: str, now: datetime) -> SweepResult:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await sweep(conn, now)


def _alerts(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT rule_code, level, state, occurrences FROM clinical_alerts ORDER BY alert_id"
        ).fetchall()


def _slots(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT day, outcome FROM adherence_slots ORDER BY day, slot"
        ).fetchall()


@pytest.fixture
def db(fresh_db: str) -> str:
    migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, _fleet())
    return fresh_db


@pytest.mark.integration
async def test_missed_slots_raise_one_blue_alert_and_late_data_resolves_it(db: str) -> None:
    d1, d2 = D + timedelta(days=1), D + timedelta(days=2)
    _weigh(db, _local(D, 8))
    _heard(db, _local(D, 12))
    assert (await _sweep(db, _local(D, 12))).met == 1
    assert _alerts(db) == []
    # the spring DST day: the slot closes at 11:00 CEST = 09:00 UTC, not a minute earlier
    _heard(db, _local(d1, 10, 59))
    assert await _sweep(db, _local(d1, 10, 59)) == SweepResult()
    r = await _sweep(db, _local(d1, 11))
    assert r.missed == (("p1", "A1-188736", "missed:2026-03-29#0"),)
    assert _alerts(db) == [("A1-188736", "blue", "open", 1)]
    assert await _sweep(db, _local(d1, 11, 30)) == SweepResult()  # decided once
    # the next day is missed too: an occurrence of the same live alert, never paged
    _heard(db, _local(d2, 12))
    assert len((await _sweep(db, _local(d2, 12))).missed) == 1
    assert _alerts(db) == [("A1-188736", "blue", "open", 2)]
    with psycopg.connect(db) as conn:
        notified = conn.execute(
            "SELECT count(*) FROM alert_event WHERE (payload ->> 'notify')::boolean"
        ).fetchone()
        message = conn.execute("SELECT message FROM clinical_alerts").fetchone()
    assert notified == (0,)
    assert message == ("Missed measurement: body weight: no valid reading 07:00-10:00 (local) "
                       "on 2026-03-29",)  # fmt: skip
    # the hub uploads yesterday's weighing late: that slot is late, the alert stays (d2 open)
    _weigh(db, _local(d1, 8, 30), received=_local(d2, 13))
    r = await _sweep(db, _local(d2, 13, 5))
    assert (r.late, r.resolved) == (1, ())
    _weigh(db, _local(d2, 9), received=_local(d2, 14))
    r = await _sweep(db, _local(d2, 14, 5))
    assert r.late == 1 and len(r.resolved) == 1
    assert _alerts(db) == [("A1-188736", "blue", "resolved", 2)]
    with psycopg.connect(db) as conn:
        resolved = conn.execute(
            "SELECT actor, note FROM alert_event WHERE type = 'resolved'"
        ).fetchall()
    assert resolved == [("system", LATE_NOTE)]
    assert [o for _, o in _slots(db)] == ["met", "late", "late"]


@pytest.mark.integration
async def test_a_silent_hub_holds_the_decision_until_it_is_heard(db: str) -> None:
    _heard(db, _local(D, 6))  # silent since 06:00
    r = await _sweep(db, _local(D, 12))
    assert (r.held, r.missed) == (1, ())
    assert _alerts(db) == []
    # back: the backlog arrives, the held slot is met
    _weigh(db, _local(D, 9, 30), received=_local(D, 12, 30))
    _heard(db, _local(D, 12, 30))
    r = await _sweep(db, _local(D, 12, 31))
    assert (r.met, r.held, r.missed) == (1, 0, ())
    assert _slots(db) == [(D, "met")]


@pytest.mark.integration
async def test_suppression_and_gated_readings(db: str) -> None:
    d1 = D + timedelta(days=1)
    with psycopg.connect(db) as conn:  # admitted on D: no blue alert
        conn.execute(
            "INSERT INTO patient_suppressions (patient_id, starts_at, ends_at, reason, author) "
            "VALUES ('p1', %s, %s, 'admitted', 'dr-a')",
            (_local(D, 0), _local(D, 23)),
        )
    _weigh(db, _local(d1, 8), flags=["data-for-testing"])  # does not count
    _heard(db, _local(d1, 12))
    r = await _sweep(db, _local(d1, 12))
    assert r.suppressed == 1 and len(r.missed) == 1
    assert _slots(db) == [(D, "suppressed"), (d1, "missed")]


@pytest.mark.integration
async def test_a_changed_plan_is_a_new_version(db: str) -> None:
    later = PlanItem(metric=WEIGHT, slots=[PlanSlot(start=time(7), deadline=time(11))])
    with psycopg.connect(db) as conn:
        apply_fleet(conn, _fleet())  # unchanged: no new version
        apply_fleet(conn, _fleet(later))
        apply_fleet(conn, _fleet(later))
        versions = conn.execute(
            "SELECT version, author, reason, definition -> 'params' -> 'slots' -> 0 ->> "
            "'deadline' FROM alert_rule_versions WHERE rule_code = 'A1-188736' ORDER BY version"
        ).fetchall()
    assert versions == [
        (1, "fleet", "measurement plan", "10:00"),
        (2, "fleet", "measurement plan changed in the fleet file", "11:00"),
    ]


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="before its deadline"):
        PlanItem(metric=WEIGHT, slots=[PlanSlot(start=time(10), deadline=time(7))])
    with pytest.raises(ValueError, match="not a metric"):
        PlanItem(metric=1, slots=[PlanSlot(start=time(7), deadline=time(10))])
    with pytest.raises(ValueError):
        PlanItem(metric=WEIGHT, slots=[])
    with pytest.raises(ValueError):
        PlanItem(metric=WEIGHT, slots=[PlanSlot(start=time(7), deadline=time(10), weekdays=[9])])
