"""Shared helpers for the API / live stream / webhook / service tests (G2).

A small fleet of three organisations sharing patients, alerts raised with plain SQL exactly as the
ingester does (SCHEMA.md: alert + alert_deliveries + NOTIFY in one transaction), the app driven
through its lifespan with httpx, and a real uvicorn server on a free port for streaming.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from gateway.service import api_server

TOKENS = {
    "rh": "tok-rh-hansen-0123456789",  # hospital clinician
    "gp": "tok-gp-berg-0123456789",  # GP clinician
    "ops": "tok-ops-platform-0123456789",  # platform operator (org kind operator)
    "rh-ops": "tok-rh-operator-0123456789",  # operator of the hospital's own hubs
}

FLEET = Fleet.from_dict(
    {
        "orgs": [
            {"id": "rh", "name": "Rigshospitalet", "kind": "hospital"},
            {"id": "gp", "name": "Lægehuset", "kind": "gp"},
            {"id": "ops", "name": "Platform operations", "kind": "operator"},
        ],
        "tokens": [
            {"token": TOKENS["rh"], "org": "rh", "clinician": "Dr. Hansen"},
            {"token": TOKENS["gp"], "org": "gp", "clinician": "Dr. Berg"},
            {"token": TOKENS["ops"], "org": "ops", "clinician": "ops-1", "role": "operator"},
            {"token": TOKENS["rh-ops"], "org": "rh", "clinician": "rh-it", "role": "operator"},
        ],
        "patients": [
            {"id": "p-001", "display_name": "Anna A.", "orgs": ["rh", "gp"]},
            {"id": "p-002", "display_name": "Bo B.", "orgs": ["gp"]},
        ],
        "hubs": [{"id": "hub-rh-1", "org": "rh"}, {"id": "hub-gp-1", "org": "gp"}],
        "devices": [
            {
                "id": "00:1C:05:AA:BB:CC",
                "hub": "hub-rh-1",
                "patient": "p-001",
                "model": "Nonin 3230",
            },
            {"id": "A&D-UA651", "hub": "hub-gp-1", "patient": "p-002", "model": "A&D UA-651BLE"},
        ],
        "rules": [
            {
                "key": "spo2-low",
                "patient": "p-001",
                "mdc": 150456,
                "op": "<",
                "threshold": 90,
                "unit": "%",
                "severity": "critical",
                "description": "SpO2 below 90 %",
            },
            {
                "key": "sys-high",
                "patient": "p-002",
                "mdc": 150021,
                "op": ">",
                "threshold": 180,
                "unit": "mm[Hg]",
                "severity": "warning",
            },
        ],
    }
)


def auth(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[org]}"}


def seed(dsn: str, fleet: Fleet = FLEET) -> None:
    """Migrate the database and apply the fleet."""
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        apply_fleet(conn, fleet)


def rule_id(dsn: str, patient: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT rule_id FROM rules WHERE patient_id = %s ORDER BY rule_id LIMIT 1", (patient,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_webhook(dsn: str, org: str, url: str, secret: str | None) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO webhooks (org_id, url, secret) VALUES (%s, %s, %s) RETURNING webhook_id",
            (org, url, secret),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def raise_alert(
    dsn: str,
    patient: str,
    *,
    value: str = "87",
    unit: str = "%",
    mdc: int = 150456,
    reading_time: datetime,
    message: str = "SpO2 below 90 %",
    severity: str = "critical",
) -> int:
    """Raise (or count another occurrence of) the patient's first rule's alert, as the ingester
    does: upsert against alerts_one_open, deliveries for new alerts, NOTIFY, one transaction."""
    rid = rule_id(dsn, patient)
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        cur = await conn.execute(
            """INSERT INTO alerts (patient_id, rule_id, reading_key, reading_time, mdc, value,
                       unit, severity, message, occurrences, last_value, last_seen_at)
                   VALUES (%(p)s, %(r)s, %(k)s, %(t)s, %(mdc)s, %(v)s, %(u)s, %(s)s, %(m)s, 1,
                       %(v)s, %(t)s)
                   ON CONFLICT (patient_id, rule_id) WHERE acknowledged_at IS NULL DO UPDATE SET
                       occurrences = alerts.occurrences + 1, last_value = EXCLUDED.last_value,
                       last_seen_at = EXCLUDED.last_seen_at
                   RETURNING alert_id, (xmax = 0)""",
            {
                "p": patient,
                "r": rid,
                "k": f"key-{reading_time.isoformat()}",
                "t": reading_time,
                "mdc": mdc,
                "v": Decimal(value),
                "u": unit,
                "s": severity,
                "m": message,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        alert_id, new = int(row[0]), bool(row[1])
        if new:
            await conn.execute(
                """INSERT INTO alert_deliveries (alert_id, webhook_id)
                       SELECT %s, w.webhook_id FROM webhooks w
                       JOIN patient_access pa ON pa.org_id = w.org_id WHERE pa.patient_id = %s
                       ON CONFLICT DO NOTHING""",
                (alert_id, patient),
            )
        await conn.execute("SELECT pg_notify('telehub_alerts', %s)", (str(alert_id),))
    return alert_id


def insert_reading(conn: psycopg.Connection[Any], **overrides: Any) -> None:
    row: dict[str, Any] = {
        "time": datetime.fromisoformat("2025-03-01T10:00:00+00:00"),
        "key": "k1",
        "patient_id": "p-001",
        "hub_id": "hub-rh-1",
        "device_id": "00:1C:05:AA:BB:CC",
        "source": "nonin-df2",
        "kind": "continuous",
        "mdc": 150456,
        "loinc": ["59408-5"],
        "unit": "%",
        "mdc_unit": 262688,
        "value": Decimal("97"),
        "special": None,
        "orig_value": None,
        "orig_unit": None,
        "panel": None,
        "grp": "g1",
        "flags": [],
        "time_source": "hub",
        "device_time": None,
        "received_at": datetime.fromisoformat("2025-03-01T10:00:01+00:00"),
        "hub_clock": "synchronized",
        "sequence": None,
        "user_id": None,
        "raw": b"\x01\x02",
    }
    row.update(overrides)
    cols = ", ".join(row)
    marks = ", ".join(f"%({c})s" for c in row)
    conn.execute(f"INSERT INTO readings ({cols}) VALUES ({marks})", row)


@asynccontextmanager
async def api_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an in-process httpx client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """The app under a real uvicorn server on a free port; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = api_server(app, graceful_timeout=2)
    task = asyncio.create_task(server.serve_or_raise(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.telehub.close_streams("shutdown")
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: answers with the queued statuses (then 200), records every request."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    base: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@asynccontextmanager
async def receiver(**kwargs: Any) -> AsyncIterator[Receiver]:
    rec = Receiver(**kwargs)
    app = Starlette(routes=[Route("/{path:path}", rec.handle, methods=["POST"])])
    sock = free_socket()
    rec.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = api_server(app, graceful_timeout=1)
    task = asyncio.create_task(server.serve_or_raise(sockets=[sock]))
    try:
        await wait_for(lambda: server.started)
        yield rec
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
