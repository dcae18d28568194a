"""Rules raise alerts in the ingest transaction: one open alert per patient and rule."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest

from gateway.ingest import AlertChange
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import T0, message, reading, running
from wire import contract

pytestmark = pytest.mark.integration

ALERTS = (
    "SELECT alert_id, patient_id, rule_id, reading_key, reading_time, mdc, value::text, unit, "
    "severity, message, occurrences, last_value::text, last_seen_at, acknowledged_at "
    "FROM alerts ORDER BY alert_id"
)
DELIVERIES = (
    "SELECT d.alert_id, w.url, d.attempts, d.delivered_at FROM alert_deliveries d "
    "JOIN webhooks w USING (webhook_id) ORDER BY 1, 2"
)


async def _listen(dsn: str, out: list[str], ready: asyncio.Event) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("LISTEN telehub_alerts")
        ready.set()
        async for n in conn.notifies():
            out.append(n.payload)


async def test_repeated_breaches_raise_one_open_alert(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    low1, ok, low2, low3 = (
        reading(1, value="88"),
        reading(2, value="97"),
        reading(3, value="85"),
        reading(4, value="87"),
    )
    invalid = reading(5, value="70", flags=["invalid-measurement-detected"])
    special = reading(6, value=None, special="nan")
    other_patient = reading(7, device="oxi-2", patient="p2", value="80")
    notified: list[str] = []
    ready = asyncio.Event()
    async with running(fresh_db, broker.url) as h:
        listener = asyncio.create_task(_listen(fresh_db, notified, ready))
        await asyncio.wait_for(ready.wait(), 5)
        batches = []
        for items, hub in (
            ([low1, ok], "hub-1"),
            ([low2], "hub-1"),
            ([low3, invalid, special], "hub-1"),
            ([low1], "hub-1"),
            ([other_patient], "hub-2"),
        ):
            _, payload = message(items, hub=hub)
            await h.publish(payload, hub=hub)
            await h.receipt()
            batches.append(await h.batch())
        alerts = h.query(ALERTS)
        deliveries = h.query(DELIVERIES)
        await asyncio.sleep(0.1)  # let the last NOTIFY arrive
        counters = h.ingester.counters.snapshot()

        # acknowledged: the next breach opens a new alert
        h.query(
            "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = 'dr' RETURNING alert_id"
        )
        low5 = reading(10, value="80")
        _, payload = message([low5])
        await h.publish(payload)
        await h.receipt()
        await h.batch()
        alerts_after = h.query(ALERTS)
        deliveries_after = h.query(DELIVERIES)
        await asyncio.sleep(0.1)
        listener.cancel()
    message_text = "SpO2 below 90 %: 88 % < 90 %"
    assert alerts == [
        (
            1,
            "p1",
            1,
            low1["key"],
            T0 + timedelta(seconds=1),
            150456,
            "88",
            "%",
            "critical",
            message_text,
            3,
            "87",
            T0 + timedelta(seconds=4),
            None,
        )
    ]
    assert [b.alerts for b in batches] == [
        (AlertChange(1, "p1", 1, True, 1),),
        (AlertChange(1, "p1", 1, False, 1),),
        (AlertChange(1, "p1", 1, False, 1),),
        (),  # duplicate: never evaluated again
        (),  # p2 has no rules
    ]
    assert deliveries == [
        (1, "https://gp.example/hook", 0, None),
        (1, "https://rh.example/hook", 0, None),
    ]
    assert (counters["alerts_raised"], counters["alerts_updated"]) == (1, 2)
    new_id = alerts_after[1][0]  # upserts consume sequence values: ids are not consecutive
    assert alerts_after[0][13] is not None  # the first one stays acknowledged
    assert alerts_after[1] == (
        new_id,
        "p1",
        1,
        low5["key"],
        T0 + timedelta(seconds=10),
        150456,
        "80",
        "%",
        "critical",
        "SpO2 below 90 %: 80 % < 90 %",
        1,
        "80",
        T0 + timedelta(seconds=10),
        None,
    )
    assert deliveries_after[2:] == [
        (new_id, "https://gp.example/hook", 0, None),
        (new_id, "https://rh.example/hook", 0, None),
    ]
    assert notified == ["1", "1", "1", str(new_id)]


async def test_breaches_in_one_batch_are_grouped(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    items = [reading(i, value=v) for i, v in enumerate(["89", "95", "70", "88.5"])]
    async with running(fresh_db, broker.url) as h:
        mid, payload = message(items)
        await h.publish(payload)
        _, receipt = await h.receipt()
        alerts = h.query(ALERTS)
    assert receipt == contract.Receipt(msg_id=mid, stored=[r["key"] for r in items])
    assert alerts == [
        (
            1,
            "p1",
            1,
            items[0]["key"],
            T0,
            150456,
            "89",
            "%",
            "critical",
            "SpO2 below 90 %: 89 % < 90 %",
            3,
            "88.5",
            T0 + timedelta(seconds=3),
            None,
        )
    ]
