"""Shared set-up for the ingest tests: a migrated database with a small fleet, a private broker,
an ingester running in the test's event loop, a publisher and a receipts listener."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from gateway.db import migrate
from gateway.fleet import Device, Fleet, Hub, Org, Patient, Rule, Webhook, apply_fleet
from gateway.ingest import Ingester, StoredBatch
from gateway.settings import GatewaySettings
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

HUB = "hub-1"
OTHER_HUB = "hub-2"
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=1)

FLEET = Fleet(
    orgs=[Org(id="rh", name="Hospital", kind="hospital"), Org(id="gp", name="GP", kind="gp")],
    patients=[Patient(id="p1", orgs=["rh", "gp"]), Patient(id="p2", orgs=["rh"])],
    hubs=[Hub(id=HUB, org="rh"), Hub(id=OTHER_HUB, org="rh")],
    devices=[
        Device(id="oxi-1", hub=HUB, patient="p1", model="Nonin 3230"),
        Device(id="scale-1", hub=HUB, patient="p1"),
        Device(id="oxi-2", hub=OTHER_HUB, patient="p2"),
    ],
    rules=[
        Rule(
            key="spo2-low",
            patient="p1",
            mdc=150456,
            op="<",
            threshold=Decimal(90),
            unit="%",
            severity="critical",
            description="SpO2 below 90 %",
        )
    ],
    webhooks=[
        Webhook(org="rh", url="https://rh.example/hook"),
        Webhook(org="gp", url="https://gp.example/hook"),
    ],
)


def reading(n: int, **over: Any) -> dict[str, Any]:
    """A valid SpO2 reading from oxi-1 (patient p1) at T0 + n seconds."""
    t = T0 + timedelta(seconds=n)
    base: dict[str, Any] = {
        "key": contract.idempotency_key(device="oxi-1", patient="p1", mdc=150456,
                                        time_token=str(n)),
        "device": "oxi-1", "patient": "p1", "source": "2a5e", "kind": "spot", "mdc": 150456,
        "loinc": ["59408-5", "2708-6"], "unit": "%", "mdc_unit": 262688, "value": "97",
        "group": f"g{n}", "flags": [], "time": t.isoformat(), "time_source": "device",
        "device_time": t.replace(tzinfo=None).isoformat(), "received_at": t.isoformat(),
        "hub_clock": "synchronized", "sequence": n, "raw": "0a0b",
    }  # fmt: skip
    base.update(over)
    return base


def encode_reading(r: dict[str, Any]) -> bytes:
    return msgspec.json.encode(r)


def message(
    readings: Sequence[dict[str, Any] | bytes],
    *,
    hub: str = HUB,
    msg_id: str | None = None,
    v: int = 1,
) -> tuple[str, bytes]:
    """(msg_id, payload) of a ReadingsMessage."""
    mid = msg_id or uuid.uuid4().hex
    raws = [r if isinstance(r, bytes) else encode_reading(r) for r in readings]
    msg = {
        "v": v,
        "hub": hub,
        "msg_id": mid,
        "sent_at": NOW.isoformat(),
        "readings": [msgspec.Raw(r) for r in raws],
    }
    return mid, msgspec.json.encode(msg)


@dataclass
class Harness:
    dsn: str
    settings: GatewaySettings
    ingester: Ingester
    pub: MqttClient
    receipts_sub: MqttClient
    batches: asyncio.Queue[StoredBatch] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self, payload: bytes, *, hub: str = HUB, leaf: str = "readings", retain: bool = False
    ) -> None:
        await self.pub.publish(f"telehub/v1/hubs/{hub}/{leaf}", payload, qos=1, retain=retain)

    async def receipt(self, timeout: float = 10.0) -> tuple[str, contract.Receipt]:
        it = self.receipts_sub.messages().__aiter__()
        m = await asyncio.wait_for(anext(it), timeout)
        self.receipts_sub.ack(m)
        return m.topic, contract.decode_receipt(m.payload)

    async def batch(self, timeout: float = 10.0) -> StoredBatch:
        return await asyncio.wait_for(self.batches.get(), timeout)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql.encode(), params).fetchall()


def settings_for(dsn: str, broker_url: str, **over: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "mqtt_url": broker_url,
        "ingester_client_id": f"ingester-{uuid.uuid4().hex[:8]}",
        "session_expiry": timedelta(minutes=5),
        "reconnect_min": 0.05,
        "reconnect_max": 0.3,
        "device_cache_refresh": 0.2,
        "db_timeout": 5.0,
    }
    values.update(over)
    return GatewaySettings(**values)


def prepare_db(dsn: str, fleet: Fleet = FLEET) -> None:
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        apply_fleet(conn, fleet)


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(
    dsn: str, broker_url: str, *, prepare: bool = True, **over: Any
) -> AsyncIterator[Harness]:
    if prepare:
        prepare_db(dsn)
    settings = settings_for(dsn, broker_url, **over)
    mqtt = MqttSettings.from_url(broker_url, protocol=settings.mqtt_protocol)
    async with (
        MqttClient(mqtt, f"pub-{uuid.uuid4().hex[:8]}") as pub,
        MqttClient(mqtt, f"rcpt-{uuid.uuid4().hex[:8]}", manual_ack=True) as sub,
    ):
        await sub.subscribe("telehub/v1/hubs/+/receipts", qos=1)
        h = Harness(dsn, settings, Ingester(settings, migrate_schema=False), pub, sub)
        h.ingester.on_stored = h.batches.put_nowait
        h.task = asyncio.create_task(h.ingester.run(h.stop))
        try:
            await wait_until(lambda: h.ingester.connected)
            yield h
        finally:
            h.stop.set()
            await asyncio.wait_for(h.task, 10)


READING_COLUMNS = (
    "time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc, unit, mdc_unit, "
    "value::text, special, orig_value::text, orig_unit, panel, grp, flags, time_source, "
    "device_time, received_at, hub_clock, sequence, user_id, raw"
)


def expected_row(r: dict[str, Any], *, hub: str = HUB, **over: Any) -> tuple[Any, ...]:
    """The readings row (READING_COLUMNS) that reading ``r`` must produce."""
    row: dict[str, Any] = {
        "time": datetime.fromisoformat(r["time"]), "key": r["key"], "patient_id": r["patient"],
        "hub_id": hub, "device_id": r["device"], "source": r["source"], "kind": r["kind"],
        "mdc": r["mdc"], "loinc": r["loinc"], "unit": r["unit"], "mdc_unit": r["mdc_unit"],
        "value": r["value"], "special": r.get("special"), "orig_value": r.get("orig_value"),
        "orig_unit": r.get("orig_unit"), "panel": r.get("panel"), "grp": r["group"],
        "flags": r["flags"], "time_source": r["time_source"], "device_time": r.get("device_time"),
        "received_at": datetime.fromisoformat(r["received_at"]), "hub_clock": r["hub_clock"],
        "sequence": r.get("sequence"), "user_id": r.get("user_id"), "raw": bytes.fromhex(r["raw"]),
    }  # fmt: skip
    row.update(over)
    return tuple(row.values())
