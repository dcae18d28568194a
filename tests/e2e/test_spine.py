"""The spine, end to end on real parts: simulated cuff and scale → edge agent (BLE seam, SQLite
outbox) → the machine's Mosquitto → ingester → PostgreSQL → rule → alert → a real HTTP webhook
server inside this test → acknowledged through the API over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from drivers.blood_pressure import BloodPressureRecord
from edge.agent import run_agent
from edge.config import BleConfig, DeviceBinding, HubConfig, Limits, MqttConfig
from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from gateway.notify.webhook import verify
from gateway.service import run_gateway
from gateway.settings import GatewaySettings
from simulators.clock import SimTime
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.fleet import demo_fleet
from telehub.embedded import free_port
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration

TOKEN_HOSPITAL = "e2e-hospital-token-0123"
TOKEN_OTHER_GP = "e2e-other-gp-token-0123"
SECRET = "e2e-webhook-secret"
Hook = tuple[dict[str, str], bytes]


@contextlib.asynccontextmanager
async def webhook_server() -> AsyncIterator[tuple[str, asyncio.Queue[Hook]]]:
    """A real HTTP/1.1 server: answers 204 and queues (headers, body) of every POST."""
    received: asyncio.Queue[Hook] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        await received.put((headers, body))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        server.close()
        await server.wait_closed()


def _central_fleet(hub: str, patient: str, devices: list[str], hook: str) -> Fleet:
    return Fleet.from_dict(
        {
            "orgs": [
                {"id": "hosp", "name": "Hospital", "kind": "hospital"},
                {"id": "gp2", "name": "Another GP", "kind": "gp"},
            ],
            "tokens": [
                {"token": TOKEN_HOSPITAL, "org": "hosp", "clinician": "Dr. E2E"},
                {"token": TOKEN_OTHER_GP, "org": "gp2", "clinician": "Dr. Other"},
            ],
            "patients": [{"id": patient, "orgs": ["hosp"]}],
            "hubs": [{"id": hub}],
            "devices": [{"id": d, "hub": hub, "patient": patient} for d in devices],
            "rules": [
                {
                    "key": "sys",
                    "patient": patient,
                    "mdc": 150021,
                    "op": ">=",
                    "threshold": 180,
                    "unit": "mm[Hg]",
                    "severity": "critical",
                }
            ],
            "webhooks": [{"org": "hosp", "url": hook, "secret": SECRET}],
        }
    )


async def test_device_bytes_reach_a_clinician_and_are_acknowledged(
    fresh_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    migrate(fresh_db)
    hub = f"hub-e2e-{uuid.uuid4().hex[:8]}"
    now_local = datetime.now(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None, microsecond=0)
    fleet = demo_fleet(1, seed=11, world=SimTime(now_local))  # P001: hypertensive crisis
    patient = fleet.patients[0]
    cuff = next(d for d in patient.devices if isinstance(d, BloodPressureMonitor))
    sent_bp = [r.data for r in cuff.memory]
    assert len(sent_bp) == 1
    record = BloodPressureRecord.parse(sent_bp[0])
    assert isinstance(record.systolic, Decimal) and record.systolic >= 180
    addresses = [b.address for b in fleet.bindings]

    api_port = free_port()
    settings = GatewaySettings(
        database_url=fresh_db,
        mqtt_url=mqtt_url,
        ingester_client_id=f"e2e-ingester-{uuid.uuid4().hex[:8]}",
        api_port=api_port,
    )
    config = HubConfig(
        hub_id=hub,
        mqtt=MqttConfig(url=mqtt_url),
        data_dir=str(tmp_path / hub),
        heartbeat_seconds=5.0,
        limits=Limits(receipt_timeout_seconds=5.0),
        ble=BleConfig(
            scan_seconds=0.3, scan_pause_seconds=0.1, idle_timeout=3.0, retry_seconds=1.0
        ),
        devices=[DeviceBinding(address=a, patient=patient.patient_id) for a in addresses],
    )
    gw_stop, edge_stop = asyncio.Event(), asyncio.Event()
    async with webhook_server() as (hook_url, hooks):
        with psycopg.connect(fresh_db) as conn:
            apply_fleet(conn, _central_fleet(hub, patient.patient_id, addresses, hook_url))
        gateway = asyncio.create_task(run_gateway(settings, stop=gw_stop))
        agent = asyncio.create_task(run_agent(config, fleet.radio, stop=edge_stop))
        try:
            headers, body = await asyncio.wait_for(hooks.get(), 60)
            # --- the clinician's webhook: signed, with the exact value ---------------------------
            assert verify(SECRET, body, headers["x-telehub-signature"])
            alert = json.loads(body)["alert"]
            assert (
                alert["patient_id"],
                alert["mdc"],
                alert["value"],
                alert["unit"],
                alert["severity"],
                alert["status"],
            ) == (patient.patient_id, 150021, str(record.systolic), "mm[Hg]", "critical", "open")

            # --- the stored readings: exact values, codes, raw bytes, provenance ---------------
            async def stored() -> list[tuple[Any, ...]]:
                async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
                    cur = await conn.execute(
                        "SELECT mdc, value::text, unit, loinc, panel, raw, time_source, hub_id,"
                        " device_id FROM readings WHERE source = '2a35' ORDER BY mdc"
                    )
                    return await cur.fetchall()

            rows = await stored()
            assert rows == [
                (
                    149546,
                    str(record.pulse_rate),
                    "/min",
                    ["8867-4"],
                    None,
                    sent_bp[0],
                    "device",
                    hub,
                    cuff.address,
                ),
                (
                    150021,
                    str(record.systolic),
                    "mm[Hg]",
                    ["8480-6"],
                    150020,
                    sent_bp[0],
                    "device",
                    hub,
                    cuff.address,
                ),
                (
                    150022,
                    str(record.diastolic),
                    "mm[Hg]",
                    ["8462-4"],
                    150020,
                    sent_bp[0],
                    "device",
                    hub,
                    cuff.address,
                ),
                (
                    150023,
                    str(record.mean_arterial_pressure),
                    "mm[Hg]",
                    ["8478-0"],
                    150020,
                    sent_bp[0],
                    "device",
                    hub,
                    cuff.address,
                ),
            ]
            assert cuff.unsent == ()  # the device saw its indication confirmed

            # --- acknowledged through the API, with per-organisation authorisation -------------
            base = f"http://127.0.0.1:{api_port}/api/v1"
            async with httpx.AsyncClient(timeout=10) as http:
                other = await http.post(
                    f"{base}/alerts/{alert['alert_id']}/ack",
                    headers={"Authorization": f"Bearer {TOKEN_OTHER_GP}"},
                )
                assert other.status_code == 404
                ack = await http.post(
                    f"{base}/alerts/{alert['alert_id']}/ack",
                    headers={"Authorization": f"Bearer {TOKEN_HOSPITAL}"},
                )
                assert ack.status_code == 200
                assert (ack.json()["status"], ack.json()["acknowledged_by"]) == (
                    "acknowledged",
                    "Dr. E2E",
                )
                still_open = await http.get(
                    f"{base}/alerts",
                    params={"status": "open"},
                    headers={"Authorization": f"Bearer {TOKEN_HOSPITAL}"},
                )
                assert still_open.status_code == 200 and still_open.json()["alerts"] == []

            # --- the hub deletes what the gateway receipted: nothing is left pending -----------
            for _ in range(100):
                with sqlite3.connect(config.outbox_path) as db:
                    pending = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
                if pending == 0:
                    break
                await asyncio.sleep(0.1)
            assert pending == 0
        finally:
            edge_stop.set()
            await asyncio.wait_for(agent, 30)
            gw_stop.set()
            await asyncio.wait_for(gateway, 30)
            await fleet.aclose()
            # Leave no retained status of this test's hub on the shared broker.
            async with MqttClient(MqttSettings.from_url(mqtt_url), f"cleanup-{hub}") as c:
                await c.publish(contract.status_topic(hub), b"", retain=True)
