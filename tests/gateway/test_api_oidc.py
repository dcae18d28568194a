"""OIDC bearer JWTs against a real HTTP discovery + JWKS server (gateway.devidp, keys generated
here): valid tokens map to organisation / role; forged, expired, wrong-issuer/audience,
alg-confused and unknown-kid tokens are 401; an unknown kid refetches the JWKS, bounded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI

from gateway.api import create_app
from gateway.api.oidc import OidcConfig
from gateway.devidp import DevIdP
from gateway.service import api_server
from tests.gateway.api_support import api_client, free_socket, seed

pytestmark = pytest.mark.integration

AUD = "telehub-api"


@dataclass
class Env:
    idp: DevIdP
    client: httpx.AsyncClient
    app: FastAPI


@pytest.fixture
async def env(fresh_db: str) -> AsyncIterator[Env]:
    seed(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE orgs SET sor_id = '265161000016000' WHERE org_id = 'gp'")
    sock = free_socket()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = DevIdP(issuer=issuer)
    server = api_server(idp.asgi(), graceful_timeout=1)
    task = asyncio.create_task(server.serve_or_raise(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        app = create_app(
            fresh_db, oidc=OidcConfig(issuer=issuer, audience=AUD, refetch_interval=60)
        )
        async with api_client(app) as client:
            yield Env(idp, client, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_maps_claims_to_org_and_role(env: Env) -> None:
    token = env.idp.issue(sub="dr-berg", aud=AUD, org="265161000016000", care_team="team-1")
    r = await env.client.get("/api/v1/patients", headers=bearer(token))
    assert r.status_code == 200
    assert [p["patient_id"] for p in r.json()["patients"]] == ["p-001", "p-002"]  # gp's
    token = env.idp.issue(sub="dr-h", aud=AUD, org="rh")
    r = await env.client.get("/api/v1/patients", headers=bearer(token))
    assert [p["patient_id"] for p in r.json()["patients"]] == ["p-001"]
    # role from the claim: a clinician may not read dead letters, an operator may
    r = await env.client.get("/api/v1/dead-letters", headers=bearer(token))
    assert r.status_code == 403
    op = env.idp.issue(sub="it-1", aud=AUD, org="rh", role="operator")
    assert (await env.client.get("/api/v1/dead-letters", headers=bearer(op))).status_code == 200


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_bad_tokens_are_401(env: Env) -> None:
    idp = env.idp
    other = DevIdP(issuer=idp.issuer)  # same issuer and kid, a key we never published
    other.keys = {idp.current: other.keys[other.current]}
    other.current = idp.current
    good = idp.issue(sub="s", aud=AUD, org="rh")
    header, payload, sig = good.split(".")
    public_pem = (
        idp.keys[idp.current]
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    # HS256 signed with the public key as the secret (the classic algorithm-confusion attack)
    confused_head = _b64({"alg": "HS256", "typ": "JWT", "kid": idp.current}) + "." + payload
    confused = (
        confused_head
        + "."
        + base64.urlsafe_b64encode(
            hmac.new(public_pem, confused_head.encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    tampered = _b64({"iss": idp.issuer, "aud": AUD, "sub": "s", "org": "gp", "iat": 1,
                     "exp": 2**40})  # fmt: skip
    cases = {
        "expired": idp.issue(sub="s", aud=AUD, org="rh", lifetime=-120),
        "wrong audience": idp.issue(sub="s", aud="someone-else", org="rh"),
        "wrong issuer": idp.issue(sub="s", aud=AUD, org="rh", iss="http://evil.example"),
        "forged signature": other.issue(sub="s", aud=AUD, org="rh"),
        "alg none": _b64({"alg": "none", "kid": idp.current}) + "." + payload + ".",
        "alg confusion": confused,
        "tampered payload": header + "." + tampered + "." + sig,
        "unknown org": idp.issue(sub="s", aud=AUD, org="nowhere"),
        "no org claim": idp.issue(sub="s", aud=AUD),
        "bad role": idp.issue(sub="s", aud=AUD, org="rh", role="admin"),
        "not a jwt": "a.b.c",
    }  # fmt: skip
    for name, token in cases.items():
        r = await env.client.get("/api/v1/patients", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"] == 'Bearer realm="telehub", error="invalid_token"'
        assert token not in r.text


async def test_unknown_kid_refetches_jwks_at_most_once_per_interval(env: Env) -> None:
    first = env.idp.issue(sub="s", aud=AUD, org="rh")
    assert (await env.client.get("/api/v1/patients", headers=bearer(first))).status_code == 200
    fetched = env.idp.jwks_requests
    assert fetched == 1
    # the IdP rotates its key a while later (the refetch interval has passed: simulated by
    # ageing the verifier's last fetch): the new kid is unknown, one refetch picks it up
    env.app.state.telehub.oidc._last_fetch -= 61
    env.idp.rotate()
    rotated = env.idp.issue(sub="s", aud=AUD, org="rh")
    assert (await env.client.get("/api/v1/patients", headers=bearer(rotated))).status_code == 200
    assert env.idp.jwks_requests == 2
    # a flood of made-up kids does not hammer the IdP (bounded by refetch_interval)
    for i in range(20):
        forged = env.idp.issue(sub="s", aud=AUD, org="rh", headers={"kid": f"nope-{i}"})
        assert (await env.client.get("/api/v1/patients", headers=bearer(forged))).status_code == 401
    assert env.idp.jwks_requests == 2
    # API tokens keep working next to OIDC
    r = await env.client.get(
        "/api/v1/patients", headers={"Authorization": "Bearer tok-rh-hansen-0123456789"}
    )
    assert r.status_code == 200


def test_symmetric_algorithms_cannot_be_configured() -> None:
    for algs in (("HS256",), ("RS256", "none"), ()):
        with pytest.raises(ValueError, match="asymmetric"):
            OidcConfig(issuer="http://i", audience="a", algorithms=algs)
