"""Worklist API: acknowledge/assign/snooze/resolve/events, per-organisation visibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest

from gateway.alerting import store
from gateway.alerting.model import AlertLevel, AlertState, Finding
from gateway.api import create_app
from tests.gateway.api_support import api_client, auth, seed

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


async def _alert(dsn: str, patient: str, level: AlertLevel) -> int:
    f = Finding(patient, "S1", 1, level, AlertState.OPEN, f"k-{patient}", T0, Decimal(85), "%",
                False, "SpO2 low", {"red_low[150456 %]": "88"})  # fmt: skip
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        applied = await store.apply_finding(conn, f, T0)
        await conn.commit()
    return applied.alert_id


@pytest.fixture
async def client(fresh_db: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    seed(fresh_db)
    async with api_client(create_app(fresh_db)) as c:
        yield c, fresh_db


async def test_worklist_actions_and_audit(client: tuple[httpx.AsyncClient, str]) -> None:
    c, dsn = client
    red = await _alert(dsn, "p-001", AlertLevel.RED)
    other = await _alert(dsn, "p-002", AlertLevel.YELLOW)  # followed by gp only
    rh = auth("rh")
    listed = (await c.get("/api/v1/worklist", headers=rh)).json()["alerts"]
    assert [(a["alert_id"], a["level"], a["state"]) for a in listed] == [(red, "red", "open")]
    assert listed[0]["params"] == {"red_low[150456 %]": "88"}
    r = await c.post(f"/api/v1/worklist/{red}/acknowledge", headers=rh, json={})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "note-required")
    r = await c.post(f"/api/v1/worklist/{red}/acknowledge", headers=rh, json={"note": "called"})
    assert (r.status_code, r.json()["state"]) == (200, "acknowledged")
    r = await c.post(f"/api/v1/worklist/{red}/assign", headers=rh, json={"assignee": "nurse-a"})
    assert r.json()["assigned_to"] == "nurse-a"
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await c.post(f"/api/v1/worklist/{red}/snooze", headers=rh, json={"until": until,
                                                                       "reason": ""})  # fmt: skip
    assert r.status_code == 422
    r = await c.post(f"/api/v1/worklist/{red}/snooze", headers=rh,
                     json={"until": until, "reason": "at dialysis"})  # fmt: skip
    assert r.json()["snoozed_until"] is not None
    r = await c.post(f"/api/v1/worklist/{red}/resolve", headers=rh, json={"note": "ok"})
    assert r.json()["state"] == "resolved"
    r = await c.post(f"/api/v1/worklist/{red}/resolve", headers=rh, json={})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "alert-resolved")
    # another organisation's patient: 404 for every action, exactly as for a missing alert
    for path in ("acknowledge", "resolve"):
        r = await c.post(f"/api/v1/worklist/{other}/{path}", headers=rh, json={"note": "x"})
        assert r.status_code == 404
    assert (await c.get(f"/api/v1/worklist/{other}/events", headers=rh)).status_code == 404
    assert (await c.get(f"/api/v1/worklist/{red}/events")).status_code == 401
    ev = (await c.get(f"/api/v1/worklist/{red}/events", headers=rh)).json()["events"]
    assert [(e["type"], e["actor"]) for e in ev] == [
        ("created", "system"), ("acknowledged", "Dr. Hansen"), ("assigned", "Dr. Hansen"),
        ("snoozed", "Dr. Hansen"), ("resolved", "Dr. Hansen"),
    ]  # fmt: skip
    r = await c.post(f"/api/v1/worklist/{red}/acknowledge", headers=rh, json={"bogus": 1})
    assert r.status_code == 422
