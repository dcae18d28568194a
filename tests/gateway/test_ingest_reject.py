"""Every bad input is dead-lettered with a specific reason; the good readings still go through."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import (
    HUB,
    NOW,
    OTHER_HUB,
    encode_reading,
    message,
    reading,
    running,
)
from wire import contract

pytestmark = pytest.mark.integration

TOPIC = contract.readings_topic(HUB)
_UTF8_BAD = encode_reading(reading(16)).replace(b'"2a5e"', b'"2a5e\xff"')
_UTF8_AT = _UTF8_BAD.index(b"\xff")
DEAD = "SELECT hub_id, topic, reading_key, reason, payload FROM dead_letters ORDER BY id"


async def test_bad_readings_are_rejected_one_by_one(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    good1, good2 = reading(1), reading(99)
    bad: list[tuple[dict[str, Any] | bytes, str]] = [
        (reading(2, device="oxi-9"), f"device: 'oxi-9' is not bound on hub '{HUB}'"),
        (reading(3, device="oxi-2"), f"device: 'oxi-2' is not bound on hub '{HUB}'"),
        (
            reading(4, patient="p2"),
            f"patient: reading says 'p2' but device 'oxi-1' on hub '{HUB}' is bound to 'p1'",
        ),
        (
            reading(5, value="101"),
            "value: 101 % is outside the plausible range 0-100 % for MDC 150456 (SpO2)",
        ),
        (
            reading(6, unit="kg", mdc_unit=263875),
            "unit: 'kg' is not a unit of MDC 150456 (SpO2; accepted: % or a unit that converts "
            "to one)",
        ),
        (reading(7, mdc_unit=263875), "mdc_unit: 263875 does not match unit '%' (MDC unit 262688)"),
        (reading(8, mdc=123456), "mdc: unknown MDC code 123456"),
        (reading(9, value="9 7"), "value: '9 7' is not a finite decimal number"),
        (reading(10, value="NaN"), "value: 'NaN' is not a finite decimal number"),
        (reading(11, value="88", special="nan"), "value: must be null when special is set"),
        (reading(12, value=None), "value: null without a special value"),
        (
            reading(13, kind="sometimes"),
            "kind: unknown kind 'sometimes' (expected one of ['continuous', 'control', 'device', "
            "'intermediate', 'spot'])",
        ),
        (reading(14, raw="zz"), "raw: not a hex string"),
        (reading(15, time="2024-01-01T00:00:00"), "time: has no UTC offset"),
        (_UTF8_BAD, f"reading: not valid UTF-8 (byte {_UTF8_AT})"),
        (
            encode_reading(reading(17)).replace(b'"mdc":150456', b'"mdc":"150456"'),
            "reading: Expected 'int', got 'str' - at '$.mdc'",
        ),
        (
            encode_reading(reading(18, source="a\u0000b")),
            "reading: contains a NUL character (\\u0000)",
        ),
    ]
    future = reading(20, time=(NOW + timedelta(days=2)).isoformat())
    items: list[dict[str, Any] | bytes] = [good1, *(b for b, _ in bad), future, good2]
    async with running(fresh_db, broker.url) as h:
        mid, payload = message(items)
        await h.publish(payload)
        _, receipt = await h.receipt()
        stored = h.query("SELECT key FROM readings ORDER BY time")
        dead = h.query(DEAD)
        counters = h.ingester.counters.snapshot()
    future_reason = dead[-1][3]
    assert future_reason.startswith(f"time: {future['time']} is more than 1 day, 0:00:00 ahead ")

    def key(item: dict[str, Any] | bytes) -> str | None:
        if isinstance(item, dict):
            return str(item["key"])
        k = msgspec.json.decode(item.replace(b"\xff", b"")).get("key")
        return None if isinstance(k, str) and "\0" in k else k

    expected_dead = [
        (HUB, TOPIC, key(item), reason, item if isinstance(item, bytes) else encode_reading(item))
        for item, reason in [*bad, (future, future_reason)]
    ]
    assert dead == expected_dead
    assert stored == [(good1["key"],), (good2["key"],)]
    assert receipt == contract.Receipt(
        msg_id=mid,
        stored=[good1["key"], good2["key"]],
        rejected=[contract.Rejection(k, r) for _, _, k, r, _ in expected_dead],
    )
    assert counters["rejected"] == len(bad) + 1
    assert counters["rejected.device-unknown"] == 2
    assert counters["rejected.range"] == 1


def _v2() -> tuple[str | None, bytes, str, list[str]]:
    mid, payload = message([reading(50), reading(51)], v=2)
    return (
        mid,
        payload,
        "v: unsupported schema version 2 (this gateway accepts 1)",
        [reading(50)["key"], reading(51)["key"]],
    )


def _hub_mismatch() -> tuple[str | None, bytes, str, list[str]]:
    mid, payload = message([reading(50)], hub=OTHER_HUB)
    return (
        mid,
        payload,
        f"hub: message hub '{OTHER_HUB}' does not match the topic's hub '{HUB}'",
        [reading(50)["key"]],
    )


def _oversized() -> tuple[str | None, bytes, str, list[str]]:
    # valid JSON, too big: the receipt names the message and its readings (the hub drops them)
    mid, payload = message([reading(50, device_time="x" * contract.MAX_PAYLOAD_BYTES)])
    n = len(payload)
    return (
        mid,
        payload,
        f"payload: {n} bytes exceeds the limit of {contract.MAX_PAYLOAD_BYTES}"
        f" bytes (dead letter keeps the first {contract.MAX_PAYLOAD_BYTES})",
        [reading(50)["key"]],
    )


def _oversized_not_json() -> tuple[str | None, bytes, str, list[str]]:
    # too big and cut short: the msg_id is still read from the bytes, the receipt has key null
    payload = b'{"v": 1, "hub": "hub-1", "msg_id": "m-big", "readings": [' + b" " * (
        contract.MAX_PAYLOAD_BYTES
    )
    n = len(payload)
    return (
        "m-big",
        payload,
        f"payload: {n} bytes exceeds the limit of {contract.MAX_PAYLOAD_BYTES}"
        f" bytes (dead letter keeps the first {contract.MAX_PAYLOAD_BYTES})",
        [],
    )


def _malformed() -> tuple[str | None, bytes, str, list[str]]:
    return (
        "m-j",
        b'{"v": 1, "hub": "hub-1", "msg_id": "m-j", "readings": [',
        ("payload: malformed JSON: Input data was truncated"),
        [],
    )


def _malformed_no_msg_id() -> tuple[str | None, bytes, str, list[str]]:
    # nothing names the message: dead-lettered only (no receipt could be matched by the hub)
    return (
        None,
        b'{"v": 1, "hub": "hub-1", "readings": [',
        ("payload: malformed JSON: Input data was truncated"),
        [],
    )


def _not_utf8() -> tuple[str | None, bytes, str, list[str]]:
    # the bad byte in the envelope (in a reading it would reject that reading only)
    mid, payload = message([reading(50)])
    payload = payload.replace(b'"sent_at":"', b'"sent_at":"caf\xe9', 1)
    at = payload.index(b"\xe9")
    return mid, payload, f"payload: not valid UTF-8 (byte {at})", []


def _schema() -> tuple[str | None, bytes, str, list[str]]:
    payload = b'{"v": 1, "hub": "hub-1", "msg_id": "m-s", "readings": {}}'
    return (
        "m-s",
        payload,
        (
            "message: does not match the ReadingsMessage schema: Expected 'array', got 'object' - "
            "at '$.readings'"
        ),
        [],
    )


@pytest.mark.parametrize(
    "case",
    [
        _v2,
        _hub_mismatch,
        _oversized,
        _oversized_not_json,
        _malformed,
        _malformed_no_msg_id,
        _not_utf8,
        _schema,
    ],
    ids=[
        "version",
        "hub-mismatch",
        "oversized",
        "oversized-not-json",
        "malformed-json",
        "malformed-no-msg-id",
        "not-utf8",
        "schema",
    ],
)
async def test_bad_message_is_rejected_whole(
    fresh_db: str,
    mosquitto: MosquittoFactory,
    case: Callable[[], tuple[str | None, bytes, str, list[str]]],
) -> None:
    broker = mosquitto()
    msg_id, payload, reason, keys = case()
    good = reading(1)
    async with running(fresh_db, broker.url) as h:
        await h.publish(payload)
        good_mid, good_payload = message([good])
        await h.publish(good_payload)
        got = []
        for _ in range(2 if msg_id else 1):
            topic, r = await h.receipt()
            assert topic == contract.receipts_topic(HUB)
            got.append(r)
        stored = h.query("SELECT key FROM readings")
        dead = h.query(DEAD)
    expected_payload = payload[: contract.MAX_PAYLOAD_BYTES]
    assert dead == [(HUB, TOPIC, None, reason, expected_payload)]
    assert stored == [(good["key"],)]
    expected = {good_mid: contract.Receipt(msg_id=good_mid, stored=[good["key"]])}
    if msg_id:
        expected[msg_id] = contract.Receipt(
            msg_id=msg_id,
            rejected=[contract.Rejection(k, reason) for k in keys]
            or [contract.Rejection(None, reason)],
        )
    assert {r.msg_id: r for r in got} == expected


async def test_unknown_hub_is_rejected(fresh_db: str, mosquitto: MosquittoFactory) -> None:
    broker = mosquitto()
    async with running(fresh_db, broker.url) as h:
        r = reading(1)
        mid, payload = message([r], hub="hub-x")
        await h.publish(payload, hub="hub-x")
        topic, receipt = await h.receipt()
        dead = h.query(DEAD)
    reason = "hub: unknown hub 'hub-x'"
    assert topic == contract.receipts_topic("hub-x")
    assert receipt == contract.Receipt(msg_id=mid, rejected=[contract.Rejection(r["key"], reason)])
    assert dead == [("hub-x", contract.readings_topic("hub-x"), None, reason, payload)]
