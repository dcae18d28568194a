"""Ingest end to end over a real Mosquitto and PostgreSQL: storage, receipts, duplicates."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import (
    HUB,
    READING_COLUMNS,
    T0,
    expected_row,
    message,
    reading,
    running,
)
from wire import contract

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "over",
    [{}, {"mqtt_protocol": "3.1.1"}, {"shared_subscription_group": "ingest"}],
    ids=["mqtt5", "mqtt311", "shared"],
)
async def test_good_readings_are_stored_with_a_receipt(
    fresh_db: str, mosquitto: MosquittoFactory, over: dict[str, Any]
) -> None:
    broker = mosquitto()
    spo2 = reading(1, value="97")
    weight = reading(
        2,
        device="scale-1",
        source="2a9d",
        mdc=188736,
        loinc=["29463-7"],
        unit="kg",
        mdc_unit=263875,
        value="72.00",
        group="w",
        flags=["bmi-absent"],
        sequence=None,
        user_id=3,
        time_source="device-unverified",
    )
    pounds = reading(
        3,
        device="scale-1",
        source="2a9d",
        mdc=188736,
        loinc=["29463-7"],
        unit="[lb_av]",
        mdc_unit=263904,
        value="150.00",
        group="w2",
    )
    special = reading(
        4,
        value=None,
        special="nres",
        time_source="hub",
        device_time=None,
        hub_clock="unsynchronized",
    )
    async with running(fresh_db, broker.url, **over) as h:
        mid, payload = message([spo2, weight, pounds, special])
        await h.publish(payload)
        topic, receipt = await h.receipt()
        rows = h.query(f"SELECT {READING_COLUMNS} FROM readings ORDER BY time")
        batch = await h.batch()
        counters = h.ingester.counters.snapshot()
        health = h.ingester.health()
    assert (topic, receipt) == (
        contract.receipts_topic(HUB),
        contract.Receipt(msg_id=mid, stored=[r["key"] for r in (spo2, weight, pounds, special)]),
    )
    assert rows == [
        expected_row(spo2),
        expected_row(weight),
        expected_row(
            pounds,
            unit="kg",
            mdc_unit=263875,
            value="68.039",
            orig_value="150.00",
            orig_unit="[lb_av]",
        ),
        expected_row(special),
    ]
    assert [(r.key, r.mdc, str(r.value), r.unit) for r in batch.stored] == [
        (spo2["key"], 150456, "97", "%"),
        (weight["key"], 188736, "72.00", "kg"),
        (pounds["key"], 188736, "68.039", "kg"),
        (special["key"], 150456, "None", "%"),
    ]
    assert (batch.duplicates, batch.rejected, batch.alerts) == ((), (), ())
    assert health["connected"] is True and health["stored"] == 4
    assert isinstance(health["last_batch_at"], str)
    assert {
        k: counters[k]
        for k in ("received", "readings", "stored", "duplicates", "rejected", "receipts", "batches")
    } == {
        "received": 1,
        "readings": 4,
        "stored": 4,
        "duplicates": 0,
        "rejected": 0,
        "receipts": 1,
        "batches": 1,
    }


async def test_redelivered_message_is_counted_as_duplicates(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    readings = [reading(i) for i in range(3)]
    async with running(fresh_db, broker.url) as h:
        mid, payload = message(readings)
        await h.publish(payload)
        assert (await h.receipt())[1] == contract.Receipt(
            msg_id=mid, stored=[r["key"] for r in readings]
        )
        # the edge resends (no receipt seen) + one new reading in another message, same batch
        mid2, payload2 = message([readings[0], reading(9)])
        await h.publish(payload)
        await h.publish(payload2)
        got = {r.msg_id: r for r in [(await h.receipt())[1], (await h.receipt())[1]]}
        count = h.query("SELECT count(*), count(DISTINCT key) FROM readings")
        counters = h.ingester.counters.snapshot()
    assert got == {
        mid: contract.Receipt(msg_id=mid, duplicates=[r["key"] for r in readings]),
        mid2: contract.Receipt(
            msg_id=mid2, stored=[reading(9)["key"]], duplicates=[readings[0]["key"]]
        ),
    }
    assert count == [(4, 4)]
    assert (counters["stored"], counters["duplicates"]) == (4, 4)


async def test_same_key_twice_in_one_message_is_stored_once(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    r = reading(1)
    async with running(fresh_db, broker.url) as h:
        mid, payload = message([r, r])
        await h.publish(payload)
        _, receipt = await h.receipt()
        assert h.query("SELECT count(*) FROM readings") == [(1,)]
    assert receipt == contract.Receipt(msg_id=mid, stored=[r["key"]], duplicates=[r["key"]])


async def test_device_bound_after_start_is_accepted_after_cache_refresh(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    r = reading(1, device="oxi-new")
    async with running(fresh_db, broker.url) as h:
        mid, payload = message([r])
        await h.publish(payload)
        _, first = await h.receipt()
        h.query(
            "INSERT INTO devices (hub_id, device_id, patient_id) VALUES (%s, 'oxi-new', 'p1') "
            "RETURNING device_id",
            (HUB,),
        )
        await asyncio.sleep(0.25)  # > device_cache_refresh
        await h.publish(payload)
        _, second = await h.receipt()
        last_seen = h.query("SELECT last_seen FROM devices WHERE device_id = 'oxi-new'")
    reason = f"device: 'oxi-new' is not bound on hub '{HUB}'"
    assert first == contract.Receipt(msg_id=mid, rejected=[contract.Rejection(r["key"], reason)])
    assert second == contract.Receipt(msg_id=mid, stored=[r["key"]])
    assert last_seen == [(T0 + timedelta(seconds=1),)]
