"""The series API against real PostgreSQL: patient-local day buckets and UTC hours equal to the
stored readings, the newest reading at once (real-time aggregation), superseded versions left
out, scope (404 + denied audit), audit of the read, bad ranges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import httpx
import psycopg
import pytest

from gateway.api import create_app
from tests.gateway.api_support import api_client, auth, insert_reading, seed

pytestmark = pytest.mark.integration

SPO2 = 150456
URL = "/api/v1/patients/p-001/series"
# Copenhagen is UTC+1 in March: 23:30 UTC on the 1st is 00:30 on the 2nd there
TIMES = {
    "a": ("2025-03-01T08:10:00Z", "97"),
    "b": ("2025-03-01T08:40:00Z", "95"),
    "c": ("2025-03-01T23:30:00Z", "90"),
    "d": ("2025-03-02T07:00:00Z", "94.5"),
}


@pytest.fixture
async def client(fresh_db: str) -> AsyncIterator[httpx.AsyncClient]:
    seed(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        for key, (t, v) in TIMES.items():
            insert_reading(conn, key=key, time=datetime.fromisoformat(t), value=Decimal(v))
    async with api_client(create_app(fresh_db)) as c:
        yield c


def _params(**over: str) -> dict[str, str]:
    return {"metric": str(SPO2), "from": "2025-02-28T23:00:00Z", "to": "2025-03-02T23:00:00Z",
            **over}  # fmt: skip


async def test_local_days_and_utc_hours(client: httpx.AsyncClient, fresh_db: str) -> None:
    r = await client.get(URL, params=_params(), headers=auth("rh"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["timezone"], body["bucket"], body["metric_name"]) == (
        "Europe/Copenhagen", "day", "SpO2",
    )  # fmt: skip
    days = [(p["start"], p["n"], p["min"], p["max"], p["first_value"], p["last_value"])
            for p in body["points"]]  # fmt: skip
    assert days == [
        ("2025-02-28T23:00:00Z", 2, "95", "97", "97", "95"),
        ("2025-03-01T23:00:00Z", 2, "90", "94.5", "90", "94.5"),
    ]
    assert Decimal(body["points"][0]["mean"]) == Decimal(96)
    hours = await client.get(URL, params=_params(bucket="hour"), headers=auth("rh"))
    assert [(p["start"], p["n"]) for p in hours.json()["points"]] == [
        ("2025-03-01T08:00:00Z", 2), ("2025-03-01T23:00:00Z", 1), ("2025-03-02T07:00:00Z", 1),
    ]  # fmt: skip
    with psycopg.connect(fresh_db) as conn:
        audited = conn.execute(
            "SELECT org_id, patient_id, outcome, row_count FROM audit_events "
            "WHERE resource = 'series' ORDER BY id"
        ).fetchall()
        # a superseded version (telehub reprocess) leaves the series
        conn.execute("UPDATE readings SET superseded_at = now() WHERE key = 'a'")
    assert audited == [("rh", "p-001", "allowed", 2), ("rh", "p-001", "allowed", 3)]
    r = await client.get(URL, params=_params(), headers=auth("rh"))
    assert r.json()["points"][0]["n"] == 1 and r.json()["points"][0]["max"] == "95"


async def test_scope_and_bad_ranges(client: httpx.AsyncClient, fresh_db: str) -> None:
    # p-002 is the GP's only: 404 like a patient that does not exist, and audited
    other = "/api/v1/patients/p-002/series"
    assert (await client.get(other, params=_params(), headers=auth("rh"))).status_code == 404
    assert (await client.get("/api/v1/patients/nobody/series", params=_params(),
                             headers=auth("rh"))).status_code == 404  # fmt: skip
    with psycopg.connect(fresh_db) as conn:
        denied = conn.execute(
            "SELECT patient_id FROM audit_events WHERE resource = 'series' AND outcome = 'denied'"
            " ORDER BY id"
        ).fetchall()
    assert denied == [("p-002",), (None,)]
    for params in (
        _params(**{"from": "2025-03-03T00:00:00Z"}),  # from after to
        _params(bucket="hour", **{"from": "2024-01-01T00:00:00Z"}),  # > 93 days of hours
        _params(bucket="week"),
        _params(**{"from": "2025-03-01T00:00:00"}),  # no offset
        {"from": "2025-03-01T00:00:00Z"},  # no metric
        _params(metric="-1"),
    ):
        r = await client.get(URL, params=params, headers=auth("rh"))
        assert r.status_code == 422, (params, r.text)
    assert (await client.get(URL, params=_params())).status_code == 401
