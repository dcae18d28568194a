"""API: health, hubs, dead letters, webhook deliveries, the error model, OpenAPI, the web page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from gateway.api import create_app
from gateway.notify.webhook import FAILED_SENTINEL
from tests.gateway.api_support import (
    add_webhook,
    api_client,
    auth,
    raise_alert,
    seed,
    wait_for,
)

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


@pytest.fixture
def app(db: str) -> FastAPI:
    stats = {"stored": 3, "db_errors": 0}
    return create_app(db, ingester_stats=lambda: stats)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app) as c:
        yield c


async def test_health_ok_with_ingester_counters(app: FastAPI, client: httpx.AsyncClient) -> None:
    await wait_for(app.state.telehub.broadcaster.listening.is_set)
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": "ok",
        "stream": {
            "running": True,
            "listening": True,
            "subscribers": 0,
            "published": 0,
            "slow_consumers_closed": 0,
            "fetch_errors": 0,
        },
        "ingester": {"stored": 3, "db_errors": 0},
    }


async def test_health_503_when_database_unreachable(unused_tcp_port: int) -> None:
    app = create_app(f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/none", acquire_timeout=0.3)
    async with api_client(app) as client:
        r = await client.get("/health")
        assert r.status_code == 503
        assert (r.json()["status"], r.json()["database"], r.json()["ingester"]) == (
            "unavailable",
            "unreachable",
            None,
        )
        # an authenticated endpoint answers with the error model, not a hang or a 500
        r = await client.get("/api/v1/patients", headers=auth("rh"))
        assert (r.status_code, r.headers["retry-after"], r.json()) == (
            503,
            "5",
            {
                "error": {
                    "code": "database_unavailable",
                    "message": "the database is unavailable",
                    "details": None,
                }
            },
        )


async def test_hubs_presence_scoped_to_the_callers_org_for_every_role(
    db: str, client: httpx.AsyncClient
) -> None:
    status = {
        "v": 1,
        "hub": "hub-rh-1",
        "state": "online",
        "at": "2025-03-01T10:00:00Z",
        "outbox": {"pending": 12, "bytes": 3400, "dropped_continuous": 0, "full": False},
        "devices": [],
    }
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE hubs SET state = 'online', last_seen = %s, status = %s WHERE hub_id = %s",
            (T0, json.dumps(status), "hub-rh-1"),
        )
        conn.execute("UPDATE devices SET last_seen = %s WHERE hub_id = 'hub-rh-1'", (T0,))
    r = await client.get("/api/v1/hubs", headers=auth("rh"))
    assert r.status_code == 200
    assert r.json() == {
        "hubs": [
            {
                "hub_id": "hub-rh-1",
                "org_id": "rh",
                "state": "online",
                "last_seen": "2025-03-01T10:00:00Z",
                "status_at": "2025-03-01T10:00:00Z",
                "outbox": {"pending": 12, "bytes": 3400, "dropped_continuous": 0, "full": False},
                "devices": [
                    {
                        "device_id": "00:1C:05:AA:BB:CC",
                        "model": "Nonin 3230",
                        "last_seen": "2025-03-01T10:00:00Z",
                    }
                ],
            }
        ]
    }
    # an operator sees only their own organisation's hubs (and devices), never another's
    r = await client.get("/api/v1/hubs", headers=auth("rh-ops"))
    assert [(h["hub_id"], h["state"], h["outbox"]) for h in r.json()["hubs"]] == [
        ("hub-rh-1", "online", status["outbox"]),
    ]
    r = await client.get("/api/v1/hubs", headers=auth("gp"))
    assert [h["hub_id"] for h in r.json()["hubs"]] == ["hub-gp-1"]
    # the platform operator sees the hubs nobody owns yet, not the organisations' hubs
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO hubs (hub_id) VALUES ('hub-unassigned')")
    r = await client.get("/api/v1/hubs", headers=auth("ops"))
    assert [h["hub_id"] for h in r.json()["hubs"]] == ["hub-unassigned"]
    r = await client.get("/api/v1/hubs", headers=auth("rh-ops"))
    assert [h["hub_id"] for h in r.json()["hubs"]] == ["hub-rh-1"]


async def test_dead_letters_operator_only_with_paging(db: str, client: httpx.AsyncClient) -> None:
    with psycopg.connect(db) as conn:
        for i in range(3):
            conn.execute(
                "INSERT INTO dead_letters (hub_id, topic, reading_key, reason, payload) "
                "VALUES (%s, %s, %s, %s, %s)",
                (
                    "hub-rh-1",
                    "telehub/v1/hubs/hub-rh-1/readings",
                    f"k{i}",
                    "unit: bad",
                    b"{" * (i + 1),
                ),
            )
    r = await client.get("/api/v1/dead-letters", headers=auth("rh"))
    assert (r.status_code, r.json()) == (
        403,
        {"error": {"code": "forbidden", "message": "operator role required", "details": None}},
    )

    r = await client.get("/api/v1/dead-letters", params={"limit": 2}, headers=auth("rh-ops"))
    assert r.status_code == 200
    page = r.json()
    assert [
        (d["reading_key"], d["payload_size"], d["payload_base64"]) for d in page["dead_letters"]
    ] == [("k2", 3, None), ("k1", 2, None)]
    first = page["dead_letters"][0]
    assert {k: v for k, v in first.items() if k not in ("id", "received_at")} == {
        "hub_id": "hub-rh-1",
        "topic": "telehub/v1/hubs/hub-rh-1/readings",
        "reading_key": "k2",
        "reason": "unit: bad",
        "payload_size": 3,
        "payload_base64": None,
    }
    r = await client.get(
        "/api/v1/dead-letters",
        params={"before_id": page["next_before_id"], "include_payload": "true"},
        headers=auth("rh-ops"),
    )
    assert [(d["reading_key"], d["payload_base64"]) for d in r.json()["dead_letters"]] == [
        ("k0", "ew==")
    ]
    assert r.json()["next_before_id"] is None


async def test_dead_letters_of_another_orgs_hub_are_never_visible(
    db: str, client: httpx.AsyncClient
) -> None:
    """Found by the issue: a municipality's operator read another organisation's patient
    readings through ?include_payload=true. Each operator sees only its own hubs' rejects."""
    with psycopg.connect(db) as conn:
        for hub in ("hub-rh-1", "hub-gp-1", "hub-unknown"):
            conn.execute(
                "INSERT INTO dead_letters (hub_id, topic, reading_key, reason, payload) "
                "VALUES (%s, %s, %s, 'unit: bad', %s)",
                (hub, f"telehub/v1/hubs/{hub}/readings", f"k-{hub}", hub.encode()),
            )
    params = {"include_payload": "true"}
    r = await client.get("/api/v1/dead-letters", params=params, headers=auth("rh-ops"))
    assert [d["hub_id"] for d in r.json()["dead_letters"]] == ["hub-rh-1"]
    # filtering by another organisation's hub id gives nothing (not an error that confirms it)
    r = await client.get(
        "/api/v1/dead-letters", params={**params, "hub_id": "hub-gp-1"}, headers=auth("rh-ops")
    )
    assert (r.status_code, r.json()["dead_letters"]) == (200, [])
    # the platform operator sees the rejects of hubs that no organisation owns, only those
    r = await client.get("/api/v1/dead-letters", params=params, headers=auth("ops"))
    assert [
        (d["hub_id"], base64.b64decode(d["payload_base64"])) for d in r.json()["dead_letters"]
    ] == [("hub-unknown", b"hub-unknown")]


async def test_webhook_deliveries_by_status(db: str, client: httpx.AsyncClient) -> None:
    hook_rh = add_webhook(db, "rh", "http://127.0.0.1:9/rh", "s1")
    hook_gp = add_webhook(db, "gp", "http://127.0.0.1:9/gp", "s2")
    alert_id = await raise_alert(db, "p-001", reading_time=T0)
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE alert_deliveries SET attempts = 10, last_error = 'HTTP 500', "
            "next_attempt_at = %s WHERE webhook_id = %s",
            (FAILED_SENTINEL, hook_rh),
        )
    r = await client.get("/api/v1/webhook-deliveries", headers=auth("rh"))
    assert r.json() == {
        "deliveries": [
            {
                "alert_id": alert_id,
                "webhook_id": hook_rh,
                "org_id": "rh",
                "url": "http://127.0.0.1:9/rh",
                "status": "failed",
                "attempts": 10,
                "next_attempt_at": None,
                "delivered_at": None,
                "last_error": "HTTP 500",
            }
        ]
    }
    r = await client.get(
        "/api/v1/webhook-deliveries", params={"status": "pending"}, headers=auth("gp")
    )
    [pending] = r.json()["deliveries"]
    assert (pending["webhook_id"], pending["status"], pending["attempts"]) == (
        hook_gp,
        "pending",
        0,
    )
    assert pending["next_attempt_at"] is not None
    # an operator sees its own organisation's deliveries only (target URLs are the org's)
    r = await client.get(
        "/api/v1/webhook-deliveries", params={"status": "all"}, headers=auth("rh-ops")
    )
    assert [(d["webhook_id"], d["status"]) for d in r.json()["deliveries"]] == [
        (hook_rh, "failed"),
    ]
    r = await client.get(
        "/api/v1/webhook-deliveries", params={"status": "all"}, headers=auth("ops")
    )
    assert r.json()["deliveries"] == []


async def test_unknown_route_and_method_use_the_error_model(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert (r.status_code, r.json()) == (
        404,
        {"error": {"code": "not_found", "message": "Not Found", "details": None}},
    )
    r = await client.delete("/api/v1/patients", headers=auth("rh"))
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")


async def test_openapi_documents_endpoints_security_and_errors(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert sorted(spec["paths"]) == [
        "/api/v1/alerts",
        "/api/v1/alerts/stream",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/dead-letters",
        "/api/v1/held-records",
        "/api/v1/held-records/{key}/dismiss",
        "/api/v1/hubs",
        "/api/v1/patients",
        "/api/v1/patients/{patient_id}/access-log",
        "/api/v1/patients/{patient_id}/consents",
        "/api/v1/patients/{patient_id}/consents/{consent_id}/withdraw",
        "/api/v1/patients/{patient_id}/readings",
        "/api/v1/patients/{patient_id}/series",
        "/api/v1/technical-alerts",
        "/api/v1/technical-alerts/{alert_id}/acknowledge",
        "/api/v1/technical-alerts/{alert_id}/resolve",
        "/api/v1/webhook-deliveries",
        "/api/v1/worklist",
        "/api/v1/worklist/stream",
        "/api/v1/worklist/{alert_id}/acknowledge",
        "/api/v1/worklist/{alert_id}/assign",
        "/api/v1/worklist/{alert_id}/events",
        "/api/v1/worklist/{alert_id}/resolve",
        "/api/v1/worklist/{alert_id}/snooze",
        "/health",
    ]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    readings = spec["paths"]["/api/v1/patients/{patient_id}/readings"]["get"]
    assert readings["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert readings["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    assert (await client.get("/docs")).status_code == 200


async def test_web_page_is_served_with_a_strict_csp(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "/api/v1/alerts/stream" in r.text and "sessionStorage" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self'" in csp
    assert ".innerHTML" not in r.text and "insertAdjacentHTML" not in r.text
    # the hashes allow exactly the page's own inline script and style
    for tag in ("script", "style"):
        [inline] = re.findall(rf"<{tag}>(.*?)</{tag}>", r.text, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}';" in csp
