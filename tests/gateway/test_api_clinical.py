"""API: authentication, per-organisation authorisation, patients, readings, alerts, ack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from gateway.api import create_app
from tests.gateway.api_support import api_client, auth, insert_reading, raise_alert, seed

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


@pytest.fixture
async def client(db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(db)) as c:
        yield c


def err(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


PROTECTED = [
    ("GET", "/api/v1/patients"),
    ("GET", "/api/v1/patients/p-001/readings"),
    ("GET", "/api/v1/alerts"),
    ("POST", "/api/v1/alerts/1/ack"),
    ("GET", "/api/v1/alerts/stream"),
    ("GET", "/api/v1/hubs"),
    ("GET", "/api/v1/dead-letters"),
    ("GET", "/api/v1/webhook-deliveries"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_or_unknown_token_is_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path)
    assert (r.status_code, r.headers["www-authenticate"], r.json()) == (
        401,
        'Bearer realm="telehub"',
        err("unauthorized", "a bearer token is required"),
    )
    r = await client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert (r.status_code, r.headers["www-authenticate"], r.json()) == (
        401,
        'Bearer realm="telehub", error="invalid_token"',
        err("unauthorized", "unknown token"),
    )
    r = await client.request(method, path, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


async def test_patients_are_those_the_org_follows(db: str, client: httpx.AsyncClient) -> None:
    with psycopg.connect(db) as conn:
        insert_reading(conn, time=T0, key="a")
        insert_reading(conn, time=T0 + timedelta(minutes=5), key="b")
    await raise_alert(db, "p-001", reading_time=T0)

    r = await client.get("/api/v1/patients", headers=auth("rh"))
    assert r.status_code == 200
    assert r.json() == {
        "patients": [
            {
                "patient_id": "p-001",
                "display_name": "Anna A.",
                "open_alerts": 1,
                "last_reading_at": "2025-03-01T10:05:00Z",
            },
        ]
    }
    r = await client.get("/api/v1/patients", headers=auth("gp"))
    assert [p["patient_id"] for p in r.json()["patients"]] == ["p-001", "p-002"]
    # the operator's organisation follows nobody
    r = await client.get("/api/v1/patients", headers=auth("ops"))
    assert r.json() == {"patients": []}


async def test_readings_keep_exact_decimals_and_all_fields(
    db: str, client: httpx.AsyncClient
) -> None:
    with psycopg.connect(db) as conn:
        insert_reading(
            conn,
            time=T0,
            key="k-2.00",
            value=Decimal("2.00"),
            mdc=188736,
            unit="kg",
            mdc_unit=1731,
            orig_value=Decimal("4.40"),
            orig_unit="[lb_av]",
            flags=["measurement-ongoing"],
            time_source="device",
            device_time="2025-03-01T11:00:00",
            sequence=7,
            user_id=1,
            panel=None,
            kind="spot",
            source="2a9d",
            loinc=["29463-7"],
        )
        insert_reading(
            conn, time=T0 + timedelta(seconds=1), key="k-tiny", value=Decimal("0.0000001")
        )
        insert_reading(conn, time=T0 + timedelta(seconds=2), key="k-nan", value=None, special="nan")
    r = await client.get(
        "/api/v1/patients/p-001/readings",
        params={"from": "2025-03-01T10:00:00Z", "to": "2025-03-01T10:00:03+00:00"},
        headers=auth("rh"),
    )
    assert r.status_code == 200
    body = r.json()
    assert [(x["key"], x["value"], x["special"]) for x in body["readings"]] == [
        ("k-nan", None, "nan"),
        ("k-tiny", "0.0000001", None),
        ("k-2.00", "2.00", None),
    ]
    assert body["readings"][2] == {
        "time": "2025-03-01T10:00:00Z",
        "time_source": "device",
        "device_time": "2025-03-01T11:00:00",
        "received_at": "2025-03-01T10:00:01Z",
        "hub_clock": "synchronized",
        "key": "k-2.00",
        "hub_id": "hub-rh-1",
        "device_id": "00:1C:05:AA:BB:CC",
        "source": "2a9d",
        "kind": "spot",
        "mdc": 188736,
        "metric": "body weight",
        "loinc": ["29463-7"],
        "value": "2.00",
        "unit": "kg",
        "mdc_unit": 1731,
        "special": None,
        "orig_value": "4.40",
        "orig_unit": "[lb_av]",
        "panel": None,
        "group": "g1",
        "flags": ["measurement-ongoing"],
        "sequence": 7,
        "user_id": 1,
    }
    assert {k: v for k, v in body.items() if k != "readings"} == {
        "patient_id": "p-001",
        "from": "2025-03-01T10:00:00Z",
        "to": "2025-03-01T10:00:03Z",
        "count": 3,
        "truncated": False,
    }


async def test_readings_range_filters_and_limit(db: str, client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db) as conn:
        for i in range(5):
            insert_reading(conn, time=T0 + timedelta(minutes=i), key=f"r{i}")
        insert_reading(
            conn,
            time=T0 + timedelta(minutes=2),
            key="pulse",
            mdc=149530,
            unit="/min",
            mdc_unit=2720,
            value=Decimal("61"),
        )
        insert_reading(conn, time=now - timedelta(hours=1), key="recent")
        insert_reading(conn, time=now - timedelta(hours=25), key="old")

    async def keys(**params: Any) -> tuple[list[str], bool]:
        r = await client.get("/api/v1/patients/p-001/readings", params=params, headers=auth("gp"))
        assert r.status_code == 200, r.text
        return [x["key"] for x in r.json()["readings"]], r.json()["truncated"]

    # from inclusive, to exclusive
    assert await keys(**{"from": "2025-03-01T10:01:00Z", "to": "2025-03-01T10:03:00Z"}) == (
        ["pulse", "r2", "r1"],
        False,
    )
    assert await keys(
        **{"from": "2025-03-01T10:00:00Z", "to": "2025-03-01T10:05:00Z", "mdc": 150456}
    ) == (["r4", "r3", "r2", "r1", "r0"], False)
    assert await keys(
        **{
            "from": "2025-03-01T10:00:00Z",
            "to": "2025-03-01T10:05:00Z",
            "mdc": [150456, 149530],
            "limit": 2,
        }
    ) == (["r4", "r3"], True)
    # default range: the last 24 h
    assert await keys() == (["recent"], False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2025-03-01T10:00:00"}, "invalid request parameters"),  # no UTC offset
        ({"limit": 10_001}, "invalid request parameters"),
        ({"limit": 0}, "invalid request parameters"),
        (
            {"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
            "`from` must be before `to`",
        ),
    ],
)
async def test_readings_bad_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, Any], message: str
) -> None:
    r = await client.get("/api/v1/patients/p-001/readings", params=params, headers=auth("rh"))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
    assert r.json()["error"]["message"] == message


async def test_validation_error_details(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/api/v1/patients/p-001/readings", params={"limit": "x"}, headers=auth("rh")
    )
    assert r.json() == err(
        "invalid_request",
        "invalid request parameters",
        [
            {
                "loc": ["query", "limit"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
            },
        ],
    )


async def test_other_orgs_patient_is_404_like_a_missing_one(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/patients/p-002/readings",
        "/api/v1/patients/nobody/readings",
        "/api/v1/alerts?patient_id=p-002",
    ):
        r = await client.get(path, headers=auth("rh"))
        assert (r.status_code, r.json()) == (404, err("not_found", "patient not found")), path


async def test_alert_lists_are_scoped_to_the_org(db: str, client: httpx.AsyncClient) -> None:
    a1 = await raise_alert(db, "p-001", reading_time=T0, value="87")
    a2 = await raise_alert(
        db,
        "p-002",
        reading_time=T0,
        value="191",
        unit="mm[Hg]",
        mdc=150021,
        message="systolic above 180",
        severity="warning",
    )

    r = await client.get("/api/v1/alerts", headers=auth("rh"))
    assert r.status_code == 200
    [alert] = r.json()["alerts"]
    raised_at = alert["raised_at"]
    assert alert == {
        "alert_id": a1,
        "patient_id": "p-001",
        "rule_id": alert["rule_id"],
        "reading_key": "key-2025-03-01T10:00:00+00:00",
        "reading_time": "2025-03-01T10:00:00Z",
        "mdc": 150456,
        "metric": "SpO2",
        "value": "87",
        "unit": "%",
        "severity": "critical",
        "message": "SpO2 below 90 %",
        "raised_at": raised_at,
        "occurrences": 1,
        "last_value": "87",
        "last_seen_at": "2025-03-01T10:00:00Z",
        "status": "open",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "acknowledged_org": None,
    }
    r = await client.get("/api/v1/alerts", headers=auth("gp"))
    assert [a["alert_id"] for a in r.json()["alerts"]] == [a2, a1]
    r = await client.get("/api/v1/alerts", params={"patient_id": "p-002"}, headers=auth("gp"))
    assert [a["alert_id"] for a in r.json()["alerts"]] == [a2]
    r = await client.get("/api/v1/alerts", headers=auth("ops"))
    assert r.json() == {"alerts": []}


async def test_ack_records_the_first_clinician_and_is_idempotent(
    db: str, client: httpx.AsyncClient
) -> None:
    alert_id = await raise_alert(db, "p-001", reading_time=T0)

    first = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=auth("rh"))
    assert first.status_code == 200
    a = first.json()
    assert (a["alert_id"], a["status"], a["acknowledged_by"], a["acknowledged_org"]) == (
        alert_id,
        "acknowledged",
        "Dr. Hansen",
        "rh",
    )
    assert a["acknowledged_at"] is not None

    # again, by the same and by another organisation following the patient: the first is kept
    for org in ("rh", "gp"):
        again = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=auth(org))
        assert (again.status_code, again.json()) == (200, a)

    lists = {
        s: [
            x["alert_id"]
            for x in (
                await client.get("/api/v1/alerts", params={"status": s}, headers=auth("rh"))
            ).json()["alerts"]
        ]
        for s in ("open", "acknowledged", "all")
    }
    assert lists == {"open": [], "acknowledged": [alert_id], "all": [alert_id]}

    # a further breach raises a new alert once the old one is acknowledged
    new_id = await raise_alert(db, "p-001", reading_time=T0 + timedelta(minutes=1))
    assert new_id != alert_id


async def test_ack_of_another_orgs_or_missing_alert_is_404(
    db: str, client: httpx.AsyncClient
) -> None:
    other = await raise_alert(db, "p-002", reading_time=T0, unit="mm[Hg]", mdc=150021)
    for alert_id in (other, other + 1000):
        r = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=auth("rh"))
        assert (r.status_code, r.json()) == (404, err("not_found", "alert not found"))
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT acknowledged_at FROM alerts WHERE alert_id = %s", (other,)
        ).fetchone()
    assert row == (None,)
