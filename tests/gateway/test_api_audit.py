"""Audit of every patient-data read, cross-organisation lookups (404 + one denied row each), and
a read that fails when its audit row cannot be written (issue 10, items 6-7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from gateway.api import create_app
from tests.gateway.api_support import api_client, auth, insert_reading, raise_alert, seed

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
RANGE = {"from": "2025-03-01T09:00:00Z", "to": "2025-03-01T11:00:00Z"}


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        insert_reading(conn)
    return fresh_db


@pytest.fixture
async def client(db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(db)) as c:
        yield c


def audit_rows(db: str) -> list[dict[str, Any]]:
    with psycopg.connect(db) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT request_id, actor, org_id, role, patient_id, resource, target, outcome, "
            "range_from, range_to, row_count, purpose FROM audit_events ORDER BY id"
        )
        return cur.fetchall()


async def test_a_readings_read_writes_one_audit_row(db: str, client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/api/v1/patients/p-001/readings",
        params=RANGE,
        headers={**auth("gp"), "X-Request-ID": "req-42"},
    )
    assert (r.status_code, r.json()["count"]) == (200, 1)
    assert audit_rows(db) == [
        {
            "request_id": "req-42",
            "actor": "Dr. Berg",
            "org_id": "gp",
            "role": "clinician",
            "patient_id": "p-001",
            "resource": "readings",
            "target": "p-001",
            "outcome": "allowed",
            "range_from": datetime(2025, 3, 1, 9, tzinfo=UTC),
            "range_to": datetime(2025, 3, 1, 11, tzinfo=UTC),
            "row_count": 1,
            "purpose": "treatment",
        }
    ]
    # a request id that could forge log lines is replaced by a generated one
    r = await client.get(
        "/api/v1/patients/p-001/readings",
        params=RANGE,
        headers={**auth("gp"), "X-Request-ID": "a b"},
    )
    assert r.status_code == 200
    assert len(audit_rows(db)[-1]["request_id"]) == 36


async def test_patient_and_alert_lists_audit_each_patient(
    db: str, client: httpx.AsyncClient
) -> None:
    await raise_alert(db, "p-001", reading_time=T0)
    await raise_alert(db, "p-002", reading_time=T0, value="190", unit="mm[Hg]", mdc=150021)
    assert (await client.get("/api/v1/patients", headers=auth("gp"))).status_code == 200
    assert (await client.get("/api/v1/alerts", headers=auth("gp"))).status_code == 200
    assert [(a["resource"], a["patient_id"], a["row_count"]) for a in audit_rows(db)] == [
        ("patients", "p-001", None),
        ("patients", "p-002", None),
        ("alerts", "p-001", 1),
        ("alerts", "p-002", 1),
    ]


async def test_cross_org_lookups_are_404_with_one_denied_row_each(
    db: str, client: httpx.AsyncClient
) -> None:
    """rh does not follow p-002 (gp's patient): every id-bearing route answers exactly as for an
    id that does not exist, and audits the refused lookup."""
    alert_gp = await raise_alert(
        db, "p-002", reading_time=T0, value="190", unit="mm[Hg]", mdc=150021
    )
    cases = [
        ("GET", "/api/v1/patients/p-002/readings", "readings", "p-002", "p-002"),
        ("GET", "/api/v1/patients/nobody/readings", "readings", None, "nobody"),
        ("GET", "/api/v1/alerts?patient_id=p-002", "alerts", "p-002", "p-002"),
        ("GET", "/api/v1/alerts?patient_id=nobody", "alerts", None, "nobody"),
        ("POST", f"/api/v1/alerts/{alert_gp}/ack", "alert-ack", "p-002", str(alert_gp)),
        ("POST", "/api/v1/alerts/999999/ack", "alert-ack", None, "999999"),
    ]
    bodies = []
    for method, path, resource, patient, target in cases:
        before = len(audit_rows(db))
        r = await client.request(method, path, headers=auth("rh"))
        assert r.status_code == 404, path
        bodies.append(r.json())
        new = audit_rows(db)[before:]
        assert [(a["outcome"], a["resource"], a["patient_id"], a["target"], a["org_id"])
                for a in new] == [("denied", resource, patient, target, "rh")], path  # fmt: skip
    # an existing but foreign id and a non-existent id are indistinguishable to the caller
    assert bodies[0] == bodies[1] and bodies[2] == bodies[3] and bodies[4] == bodies[5]
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT acknowledged_at FROM alerts WHERE alert_id = %s", (alert_gp,)
        ).fetchone()
    assert row == (None,)  # and nothing was changed


async def test_the_read_fails_when_the_audit_write_fails(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'audit store full'; END$$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    app = create_app(db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            r = await c.get("/api/v1/patients/p-001/readings", params=RANGE, headers=auth("gp"))
    assert r.status_code == 500
    assert "readings" not in r.json()
    assert r.json()["error"]["code"] == "internal_error"
    assert audit_rows(db) == []
