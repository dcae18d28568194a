"""API input hygiene and token lifecycle: unstorable characters, size and range limits, docs
switched off, token expiry / revocation / minimum length (issue 10, items 1-2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from gateway.api import create_app
from gateway.fleet import Fleet, FleetError, apply_fleet
from gateway.settings import GatewaySettings
from tests.gateway.api_support import FLEET, TOKENS, api_client, auth, seed

pytestmark = pytest.mark.integration


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


@pytest.fixture
async def client(db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(db)) as c:
        yield c


BAD_PATHS = [
    "/api/v1/patients/a%00b/readings",  # the 500
    "/api/v1/patients/a%0Ab/readings",
    "/api/v1/patients/a%FFb/readings",  # not UTF-8
    "/api/v1/patients/%C0%AF/readings",  # overlong encoding
    "/api/v1/patients/a%ED%A0%80b/readings",  # a UTF-16 surrogate in UTF-8
]

BAD_QUERIES = [
    ("/api/v1/alerts", "patient_id=a%00b"),
    ("/api/v1/alerts", "patient_id=%00"),
    ("/api/v1/alerts", "status=open%00"),
    ("/api/v1/dead-letters", "hub_id=hub%00x"),
    ("/api/v1/dead-letters", "hub_id=%FF"),
    ("/api/v1/patients/p-001/readings", "from=2025-03-01T00:00:00%00Z"),
    ("/api/v1/patients/p-001/readings", "a%00=1"),  # in a name, too
]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_unstorable_path_is_400_not_500(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path, headers=auth("rh"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert r.json()["error"]["message"].startswith("the path ")


@pytest.mark.parametrize(("path", "query"), BAD_QUERIES)
async def test_unstorable_query_is_400_not_500(
    client: httpx.AsyncClient, path: str, query: str
) -> None:
    r = await client.get(f"{path}?{query}", headers=auth("rh-ops"))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "code": "invalid_request",
        "message": r.json()["error"]["message"],
        "details": None,
    }
    assert r.json()["error"]["message"].startswith("the query string ")


async def test_good_unicode_still_works(client: httpx.AsyncClient) -> None:
    # a non-ASCII id is fine (an unknown patient: 404, not 400)
    r = await client.get("/api/v1/patients/s%C3%B8ren/readings", headers=auth("rh"))
    assert r.status_code == 404
    r = await client.get("/api/v1/alerts", params={"patient_id": "æøå\t"}, headers=auth("rh"))
    assert r.status_code == 404


async def test_body_and_url_size_limits(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/alerts/1/ack", content=b"x" * (65 * 1024), headers=auth("rh"))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(70):
            yield b"y" * 1024

    r = await client.post("/api/v1/alerts/1/ack", content=chunks(), headers=auth("rh"))
    assert r.status_code == 413
    r = await client.get("/api/v1/alerts?patient_id=" + "a" * 9000, headers=auth("rh"))
    assert (r.status_code, r.json()["error"]["code"]) == (414, "uri_too_long")


async def test_readings_time_range_is_limited(client: httpx.AsyncClient) -> None:
    end = datetime(2025, 3, 1, tzinfo=UTC)
    params = {"from": (end - timedelta(days=94)).isoformat(), "to": end.isoformat()}
    r = await client.get("/api/v1/patients/p-001/readings", params=params, headers=auth("rh"))
    assert (r.status_code, r.json()["error"]["message"]) == (
        422,
        "the time range may span at most 93 days",
    )
    params["from"] = (end - timedelta(days=93)).isoformat()
    r = await client.get("/api/v1/patients/p-001/readings", params=params, headers=auth("rh"))
    assert r.status_code == 200


async def test_openapi_and_docs_can_be_switched_off(db: str) -> None:
    async with api_client(create_app(GatewaySettings(database_url=db, api_docs=False))) as c:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert (await c.get(path)).status_code == 404
        assert (await c.get("/api/v1/patients", headers=auth("rh"))).status_code == 200
    async with api_client(create_app(db)) as c:
        assert (await c.get("/openapi.json")).status_code == 200


# -- tokens ---------------------------------------------------------------------------------------
def _with_tokens(tokens: list[dict[str, object]]) -> Fleet:
    data = FLEET.model_dump(mode="json")
    data["tokens"] = tokens
    return Fleet.from_dict(data)


@pytest.mark.parametrize(
    "token", ["x", "short-token-19chars", "a" * 10, " " + "b" * 25, "c" * 20 + "\n"]
)
def test_short_or_odd_tokens_are_rejected_at_seed(token: str) -> None:
    with pytest.raises(FleetError) as exc:
        _with_tokens([{"token": token, "org": "rh"}])
    assert "tokens[0].token" in str(exc.value)
    assert token.strip() not in str(exc.value)  # the secret is never echoed


async def test_tokens_are_hashed_expire_and_are_revoked_on_reseed(
    db: str, client: httpx.AsyncClient
) -> None:
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT token_sha256 FROM api_tokens").fetchall()
        assert all(TOKENS["rh"].encode() not in bytes(t) for (t,) in stored)
        assert len(stored) == len(TOKENS)
    assert (await client.get("/api/v1/patients", headers=auth("gp"))).status_code == 200

    past = datetime.now(UTC) - timedelta(seconds=1)
    future = datetime.now(UTC) + timedelta(days=1)
    fleet = _with_tokens(
        [
            {"token": TOKENS["rh"], "org": "rh", "clinician": "Dr. Hansen", "expires": past},
            {"token": TOKENS["ops"], "org": "ops", "role": "operator", "expires": future},
        ]
    )
    with psycopg.connect(db) as conn:
        apply_fleet(conn, fleet)
    unknown = {"code": "unauthorized", "message": "unknown token", "details": None}
    for org in ("rh", "gp", "rh-ops"):  # expired, and removed from the fleet file
        r = await client.get("/api/v1/patients", headers=auth(org))
        assert (r.status_code, r.json()["error"]) == (401, unknown), org
        assert r.headers["www-authenticate"] == 'Bearer realm="telehub", error="invalid_token"'
    assert (await client.get("/api/v1/hubs", headers=auth("ops"))).status_code == 200
    with psycopg.connect(db) as conn:
        revoked = conn.execute(
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL"
        ).fetchone()
    assert revoked == (2,)  # kept for the audit trail, not deleted

    # re-seeding the original file reinstates them (the file is authoritative)
    with psycopg.connect(db) as conn:
        apply_fleet(conn, FLEET)
    for org in ("rh", "gp", "rh-ops", "ops"):
        assert (await client.get("/api/v1/patients", headers=auth(org))).status_code == 200
