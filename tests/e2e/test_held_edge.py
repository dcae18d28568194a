"""A shared scale's guest never becomes a patient's weight (issue 8 item 5), end to end: the
simulated scale → the real edge agent (BLE seam, SQLite outbox) → Mosquitto → the real
ingester → PostgreSQL → the API. The household member's weight is a reading of their patient;
the guest's (User ID 0xFF) is a held record for the hub organisation's operators, with a
technical alert, and no reading of anyone; the hub's outbox empties (both were receipted)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from edge.agent import AgentParts, run_agent
from edge.config import BleConfig, DeviceBinding, HubConfig, Limits, MqttConfig
from gateway.api import create_app
from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from gateway.ingest import Ingester
from gateway.settings import GatewaySettings
from simulators.ble.radio import SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.scale import WeightScale
from simulators.physiology import Physiology, Profile
from tests.gateway.api_support import api_client
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration

ADDR = "5C:F8:21:00:00:0F"
OPS = "tok-e2e-held-ops-0123456789"
OTHER = "tok-e2e-held-other-0123456789"
UNKNOWN_USER = 0xFF  # Weight Scale: "unknown user"


async def _until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_a_guest_weight_is_held_for_review_and_never_a_reading(
    fresh_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    hub = f"hub-held-{uuid.uuid4().hex[:8]}"
    migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, Fleet.from_dict({
            "orgs": [{"id": "kom", "name": "Kommune", "kind": "municipality"},
                     {"id": "h2", "name": "Other", "kind": "hospital"}],
            "tokens": [{"token": OPS, "org": "kom", "clinician": "kom-it", "role": "operator"},
                       {"token": OTHER, "org": "h2", "clinician": "h2-it", "role": "operator"}],
            "patients": [{"id": "p1", "orgs": ["kom"]}],
            "hubs": [{"id": hub, "org": "kom"}],
            "devices": [{"id": ADDR, "hub": hub, "patient": "p1"}],
        }))  # fmt: skip
    world = SimTime(speed=1.0)
    scale = WeightScale(ADDR, Physiology(Profile.NORMAL, 3), world=world, user_id=1)
    scale.take_reading(Decimal("81.4"))  # the patient (device user 1)
    scale.user_id = UNKNOWN_USER
    scale.take_reading(Decimal("64.2"))  # a guest steps on the shared scale
    radio = SimulatedRadio(world=world)
    radio.add(scale)

    settings = GatewaySettings(
        database_url=fresh_db,
        mqtt_url=mqtt_url,
        ingester_client_id=f"ingester-{uuid.uuid4().hex[:8]}",
        reconnect_min=0.05,
        reconnect_max=0.3,
        device_cache_refresh=0.2,
    )
    ingester = Ingester(settings, migrate_schema=False)
    gw_stop, edge_stop = asyncio.Event(), asyncio.Event()
    gw = asyncio.create_task(ingester.run(gw_stop))
    config = HubConfig(
        hub_id=hub,
        mqtt=MqttConfig(url=mqtt_url),
        data_dir=str(tmp_path / hub),
        heartbeat_seconds=5.0,
        limits=Limits(receipt_timeout_seconds=3.0),
        ble=BleConfig(
            scan_seconds=0.3, scan_pause_seconds=0.1, idle_timeout=3.0, retry_seconds=0.5
        ),
        devices=[DeviceBinding(address=ADDR, users={"1": "p1"})],
    )
    parts: list[AgentParts] = []
    agent = asyncio.create_task(run_agent(config, radio, stop=edge_stop, parts=parts))
    try:
        await _until(lambda: ingester.counters.held_stored == 1 and ingester.counters.stored >= 1)
        await _until(lambda: parts[0].outbox.stats().pending == 0)
    finally:
        edge_stop.set()
        await asyncio.wait_for(agent, 30)
        gw_stop.set()
        await asyncio.wait_for(gw, 15)
        async with MqttClient(MqttSettings.from_url(mqtt_url), f"cleanup-{hub}") as c:
            await c.publish(contract.status_topic(hub), b"", retain=True)
    assert scale.unsent == ()  # both records were confirmed to the scale

    with psycopg.connect(fresh_db) as conn:
        readings = conn.execute(
            "SELECT patient_id, value::text, user_id FROM readings WHERE hub_id = %s", (hub,)
        ).fetchall()
        held = conn.execute(
            'SELECT reason, user_id, "values" FROM held_records WHERE hub_id = %s', (hub,)
        ).fetchall()
        tech = conn.execute(
            "SELECT kind, count, state FROM technical_alerts WHERE hub_id = %s", (hub,)
        ).fetchall()
    assert [(p, Decimal(v)) for p, v, _ in readings] == [("p1", Decimal("81.4"))]
    [(reason, user_id, values)] = held
    assert (reason, user_id) == ("unknown-user", UNKNOWN_USER)
    assert [(v["mdc"], Decimal(v["value"]), v["unit"]) for v in values] == [
        (188736, Decimal("64.2"), "kg")
    ]
    assert tech == [("held-records", 1, "open")]

    async with api_client(create_app(fresh_db)) as c:
        mine = await c.get("/api/v1/held-records", headers={"Authorization": f"Bearer {OPS}"})
        assert [(i["reason"], i["hub_id"]) for i in mine.json()["held_records"]] == [
            ("unknown-user", hub)
        ]
        theirs = await c.get("/api/v1/held-records", headers={"Authorization": f"Bearer {OTHER}"})
        assert theirs.json()["held_records"] == []
