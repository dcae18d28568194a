"""The clinical alert store through the real ingest path (PostgreSQL + Mosquitto): one live alert
per patient and rule, yellow -> red escalation, duplicates counted once, ack/reopen/resolve,
the append-only event log and its NOTIFY."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.alerting import store
from gateway.alerting.templates import Programme
from tests.gateway.ingest_support import T0, message, prepare_db, reading, running

pytestmark = pytest.mark.integration

ALERTS = (
    "SELECT rule_code, rule_version, level, state, occurrences, reading_key, late "
    "FROM clinical_alerts ORDER BY alert_id"
)
EVENTS = "SELECT alert_id, type, level, actor, note FROM alert_event ORDER BY event_id"


async def _activate(dsn: str, programme: Programme) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await store.activate_programme(conn, "p1", programme, T0 - timedelta(days=30), "dr-a")


async def _send(h: Any, items: list[dict[str, Any]]) -> None:
    _, payload = message(items)
    await h.publish(payload)
    await h.receipt()
    await h.batch()


async def _listen(dsn: str, out: list[str], ready: asyncio.Event) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"LISTEN {store.CHANNEL}")
        ready.set()
        async for n in conn.notifies():
            out.append(n.payload)


async def test_lifecycle_through_ingest(fresh_db: str, mosquitto: Any) -> None:
    broker = mosquitto()
    prepare_db(fresh_db)
    await _activate(fresh_db, Programme.COPD)
    notified: list[str] = []
    ready = asyncio.Event()
    async with running(fresh_db, broker.url, prepare=False) as h:
        listener = asyncio.create_task(_listen(fresh_db, notified, ready))
        await asyncio.wait_for(ready.wait(), 5)
        yellow = reading(1, value="90")
        await _send(h, [yellow, yellow])  # the same reading twice in one batch
        assert h.query(ALERTS) == [("S1", 1, "yellow", "open", 1, yellow["key"], False)]
        gated = reading(2, value="70", flags=["low-perfusion"])
        await _send(h, [gated])
        assert h.query(ALERTS)[0][4] == 1  # gated: stored, no occurrence
        [(alert_id,)] = h.query("SELECT alert_id FROM clinical_alerts")
        now = datetime.now(UTC)
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
            await store.acknowledge(conn, alert_id, "dr-b", None, now)  # yellow: no note needed
        await _send(h, [reading(3, value="86")])  # red: re-opens the acknowledged alert
        assert h.query(ALERTS) == [("S1", 1, "red", "open", 2, yellow["key"], False)]
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
            with pytest.raises(store.TransitionRefused) as refused:
                await store.acknowledge(conn, alert_id, "dr-b", "  ", now)
            assert refused.value.code is store.RefusalCode.NOTE_REQUIRED
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
            await store.acknowledge(conn, alert_id, "dr-b", "called patient", now)
            await store.assign(conn, alert_id, "dr-b", "nurse-c", now)
            await store.snooze(conn, alert_id, actor="nurse-c", until=now + timedelta(hours=2),
                               reason="patient resting", at=now)  # fmt: skip
            await store.resolve(conn, alert_id, "nurse-c", "seen at home", now)
        await _send(h, [reading(4, value="91")])  # after resolve: a new alert
        alerts = h.query(ALERTS)
        events = h.query(EVENTS)
        count = h.query("SELECT count(*) FROM alert_event")[0][0]
        await asyncio.sleep(0.2)
        listener.cancel()
    assert [a[3] for a in alerts] == ["resolved", "open"]
    assert [(e[1], e[2], e[3]) for e in events] == [
        ("created", "yellow", "system"),
        ("acknowledged", "yellow", "dr-b"),
        ("occurrence", "red", "system"),
        ("severity_changed", "red", "system"),
        ("reopened", "red", "system"),
        ("acknowledged", "red", "dr-b"),
        ("assigned", "red", "dr-b"),
        ("snoozed", "red", "nurse-c"),
        ("resolved", "red", "nurse-c"),
        ("created", "yellow", "system"),
    ]
    assert sorted(int(x) for x in notified) == list(range(1, count + 1))
    with psycopg.connect(fresh_db) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("UPDATE alert_event SET note = 'x'")


async def test_late_red_is_yellow_and_not_paged(fresh_db: str, mosquitto: Any) -> None:
    broker = mosquitto()
    prepare_db(fresh_db)
    await _activate(fresh_db, Programme.COPD)
    async with running(fresh_db, broker.url, prepare=False) as h:
        r = reading(1, value="80")
        r["time"] = (T0 - timedelta(hours=27)).isoformat()
        await _send(h, [r])
        alerts = h.query(ALERTS)
        payload = h.query("SELECT payload FROM alert_event")[0][0]
    assert alerts == [("S1", 1, "yellow", "open", 1, r["key"], True)]
    assert payload["notify"] is False and payload["late"] is True


async def test_rule_versions_are_immutable(fresh_db: str) -> None:
    prepare_db(fresh_db)
    await _activate(fresh_db, Programme.HEART_FAILURE)
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        v2 = await store.override_rule(conn, "p1", "W1", author="dr-a", reason="dry weight set",
                                       effective_from=T0, enabled=False)  # fmt: skip
        await conn.commit()
        assert v2.version == 2
        again = await store.activate_programme(conn, "p1", Programme.HEART_FAILURE, T0, "dr-a")
        assert again == []
    with psycopg.connect(fresh_db) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("UPDATE alert_rule_versions SET enabled = true")


FLEET_TOML = """
[[orgs]]
id = "rh"
name = "Hospital"
kind = "hospital"

[[patients]]
id = "p9"
orgs = ["rh"]
timezone = "America/New_York"
programmes = ["copd", "diabetes"]
programmes_from = 2026-01-01T00:00:00Z
"""


async def test_fleet_file_activates_programmes_once(fresh_db: str) -> None:
    from gateway.db import migrate
    from gateway.fleet import Fleet, FleetError, apply_fleet

    migrate(fresh_db)
    fleet = Fleet.from_toml(FLEET_TOML)
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, fleet)
        apply_fleet(conn, fleet)  # idempotent: no second version 1
        rows = conn.execute(
            "SELECT rule_code, version, programme, author FROM alert_rule_versions "
            "ORDER BY rule_code"
        ).fetchall()
        tz = conn.execute("SELECT timezone FROM patients WHERE patient_id = 'p9'").fetchone()
    assert rows == [
        ("G", 1, "diabetes", "fleet"), ("G5", 1, "diabetes", "fleet"), ("P", 1, "copd", "fleet"),
        ("S1", 1, "copd", "fleet"), ("S4", 1, "copd", "fleet"), ("T1", 1, "copd", "fleet"),
    ]  # fmt: skip
    assert tz == ("America/New_York",)
    with pytest.raises(FleetError, match="time zone"):
        Fleet.from_toml(FLEET_TOML.replace("America/New_York", "Mars/Olympus"))
    with pytest.raises(FleetError):
        Fleet.from_toml(FLEET_TOML.replace('"copd"', '"astrology"'))
