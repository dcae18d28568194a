"""Held records (issue 8 item 5): records no patient owns reach the gateway, are stored exactly
once for review (never as readings), raise one live technical alert per hub and kind, and are
visible only to the operators of the hub's organisation, audited."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from gateway.api import create_app
from gateway.fleet import Fleet, Token, apply_fleet
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.api_support import api_client
from tests.gateway.ingest_support import FLEET, HUB, NOW, OTHER_HUB, T0, Harness, reading, running
from wire import contract

pytestmark = pytest.mark.integration

OPS = "tok-held-ops-0123456789"  # operator of the hubs' organisation (rh)
GP_OPS = "tok-held-gp-ops-0123456789"  # operator of another organisation
CLIN = "tok-held-clin-0123456789"  # clinician of rh (not an operator)


def held(n: int, reason: str = "unknown-user", **over: Any) -> dict[str, Any]:
    raw = bytes([0x06, n & 0xFF, 0x2A]).hex()
    rec: dict[str, Any] = {
        "key": contract.held_key("scale-1", "2a9d", bytes.fromhex(raw)),
        "device": "scale-1", "source": "2a9d", "reason": reason,
        "received_at": (T0 + timedelta(seconds=n)).isoformat(), "raw": raw,
        "user_id": 255 if reason == "unknown-user" else None,
        "values": [{"mdc": 188736, "value": f"{70 + n}.5", "unit": "kg"}],
    }  # fmt: skip
    rec.update(over)
    return rec


def payload(
    readings: Sequence[dict[str, Any]], held_records: Sequence[dict[str, Any]], *, hub: str = HUB
) -> tuple[str, bytes]:
    mid = uuid.uuid4().hex
    return mid, msgspec.json.encode(
        {
            "v": 1,
            "hub": hub,
            "msg_id": mid,
            "sent_at": NOW.isoformat(),
            "readings": list(readings),
            "held": list(held_records),
        }
    )


async def send(
    h: Harness,
    readings: Sequence[dict[str, Any]],
    held_records: Sequence[dict[str, Any]],
    *,
    hub: str = HUB,
) -> contract.Receipt:
    mid, body = payload(readings, held_records, hub=hub)
    await h.publish(body, hub=hub)
    _, receipt = await h.receipt()
    assert receipt.msg_id == mid
    return receipt


def tech(h: Harness) -> list[tuple[Any, ...]]:
    return h.query(
        "SELECT hub_id, kind, count, state FROM technical_alerts ORDER BY hub_id, kind, alert_id"
    )


async def test_held_records_are_stored_once_for_review_and_never_as_readings(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    good = reading(1)
    guest, overflow = held(1), held(2, "queue-overflow", source="2a5e", values=[])
    async with running(fresh_db, broker.url) as h:
        # a guest record that claims a patient (an old or hostile hub): the field is ignored
        claims = held(3, "unmapped-user", user_id=4, patient="p1")
        bad = [
            (held(4, reason="mine"), "held: reason: unknown reason 'mine'"),
            (held(5, raw="zz"), "held: raw: not a hex string"),
            (held(6, raw=""), "held: raw: empty"),
            (held(7, user_id=300), "held: user_id: 300 is not a device user index (0-255)"),
            (held(8, received_at="2024-01-01T00:00:00"), "held: received_at: has no UTC offset"),
            (
                held(9, received_at=(NOW + timedelta(days=2)).isoformat()),
                "held: received_at: in the future of the gateway clock",
            ),
            (held(10, device=""), "held: device: length 0 is not within 1-200"),
            (held(11, source="a\u0000b"), "held: contains a NUL character (\\u0000)"),
        ]
        receipt = await send(h, [good], [guest, overflow, claims, *(b for b, _ in bad)])
        assert sorted(receipt.stored) == sorted([good["key"], guest["key"], overflow["key"],
                                                 claims["key"]])  # fmt: skip
        assert receipt.duplicates == []
        assert sorted((r.key or "", r.reason) for r in receipt.rejected) == sorted(
            (b["key"], reason) for b, reason in bad
        )
        # the good reading is a reading of p1; nothing else is
        assert h.query("SELECT key, patient_id FROM readings") == [(good["key"], "p1")]
        rows = h.query(
            'SELECT key, hub_id, device_id, reason, user_id, raw, "values" '
            "FROM held_records ORDER BY received_at"
        )
        assert rows == [
            (guest["key"], HUB, "scale-1", "unknown-user", 255, bytes.fromhex(guest["raw"]),
             [{"mdc": 188736, "value": "71.5", "unit": "kg", "special": None}]),
            (overflow["key"], HUB, "scale-1", "queue-overflow", None,
             bytes.fromhex(overflow["raw"]), []),
            (claims["key"], HUB, "scale-1", "unmapped-user", 4, bytes.fromhex(claims["raw"]),
             [{"mdc": 188736, "value": "73.5", "unit": "kg", "special": None}]),
        ]  # fmt: skip
        assert tech(h) == [(HUB, "ble-overflow", 1, "open"), (HUB, "held-records", 2, "open")]
        dead = h.query("SELECT reading_key, reason FROM dead_letters ORDER BY id")
        assert sorted(dead) == sorted((b["key"], reason) for b, reason in bad)

        # the hub re-sends (its receipt was lost): duplicates, nothing counted twice
        again = await send(h, [good], [guest, overflow])
        assert (again.stored, sorted(again.duplicates)) == (
            [],
            sorted([good["key"], guest["key"], overflow["key"]]),
        )
        assert tech(h) == [(HUB, "ble-overflow", 1, "open"), (HUB, "held-records", 2, "open")]
        # twice in one message: stored once, the second a duplicate
        twice = held(12)
        r = await send(h, [], [twice, twice])
        assert (r.stored, r.duplicates) == ([twice["key"]], [twice["key"]])
        assert tech(h)[1] == (HUB, "held-records", 3, "open")
        assert h.ingester.counters.held_stored == 4
        # another hub gets its own alert
        other = held(13) | {"device": "oxi-2"}
        await send(h, [], [other], hub=OTHER_HUB)
        assert tech(h)[-1] == (OTHER_HUB, "held-records", 1, "open")


async def test_held_records_of_an_unknown_hub_are_rejected_by_key(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    rec = held(1)
    async with running(fresh_db, broker.url) as h:
        receipt = await send(h, [], [rec], hub="hub-nobody")
        assert [(r.key, r.reason) for r in receipt.rejected] == [
            (rec["key"], "hub: unknown hub 'hub-nobody'")
        ]
        assert h.query("SELECT count(*) FROM held_records") == [(0,)]
        assert tech(h) == []


async def test_review_is_for_the_hubs_organisations_operators_only_and_audited(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    guest, overflow = held(1), held(2, "queue-overflow", values=[])
    async with running(fresh_db, broker.url) as h:
        await send(h, [], [guest, overflow])

    fleet = Fleet(
        orgs=FLEET.orgs,
        tokens=[
            Token(token=OPS, org="rh", clinician="rh-it", role="operator"),
            Token(token=GP_OPS, org="gp", clinician="gp-it", role="operator"),
            Token(token=CLIN, org="rh", clinician="Dr. Hansen"),
        ],
        patients=FLEET.patients,
        hubs=FLEET.hubs,
        devices=FLEET.devices,
        rules=FLEET.rules,
        webhooks=FLEET.webhooks,
    )
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, fleet)

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with api_client(create_app(fresh_db)) as c:
        r = await c.get("/api/v1/held-records", headers=auth(OPS))
        assert r.status_code == 200, r.text
        items = r.json()["held_records"]
        assert sorted(i["key"] for i in items) == sorted([guest["key"], overflow["key"]])
        by_key = {i["key"]: i for i in items}
        assert by_key[guest["key"]]["raw_hex"] == guest["raw"]
        assert by_key[guest["key"]]["values"] == [
            {"mdc": 188736, "value": "71.5", "unit": "kg", "special": None}
        ]
        # another organisation's operator sees nothing and cannot act; a clinician is refused
        r = await c.get("/api/v1/held-records", headers=auth(GP_OPS))
        assert (r.status_code, r.json()["held_records"]) == (200, [])
        r = await c.post(f"/api/v1/held-records/{guest['key']}/dismiss",
                         json={"note": "x"}, headers=auth(GP_OPS))  # fmt: skip
        assert r.status_code == 404
        assert (await c.get("/api/v1/held-records", headers=auth(CLIN))).status_code == 403
        r = await c.get("/api/v1/technical-alerts", headers=auth(GP_OPS))
        assert r.json()["technical_alerts"] == []

        # review: dismiss with a note; a second dismissal conflicts; a note is required
        url = f"/api/v1/held-records/{guest['key']}/dismiss"
        assert (await c.post(url, json={}, headers=auth(OPS))).status_code == 422
        r = await c.post(url, json={"note": "a guest weighed themselves"}, headers=auth(OPS))
        assert r.status_code == 200, r.text
        assert (r.json()["dismissed_by"], r.json()["dismiss_note"]) == (
            "rh-it",
            "a guest weighed themselves",
        )
        assert (await c.post(url, json={"note": "again"}, headers=auth(OPS))).status_code == 409
        r = await c.get("/api/v1/held-records", headers=auth(OPS))
        assert [i["key"] for i in r.json()["held_records"]] == [overflow["key"]]
        r = await c.get("/api/v1/held-records?state=dismissed", headers=auth(OPS))
        assert [i["key"] for i in r.json()["held_records"]] == [guest["key"]]

        # technical alerts: acknowledge, resolve; then the hub's next record raises a new one
        r = await c.get("/api/v1/technical-alerts", headers=auth(OPS))
        alerts = {a["kind"]: a for a in r.json()["technical_alerts"]}
        assert {k: (a["count"], a["state"]) for k, a in alerts.items()} == {
            "held-records": (1, "open"), "ble-overflow": (1, "open")
        }  # fmt: skip
        aid = alerts["held-records"]["alert_id"]
        ack = f"/api/v1/technical-alerts/{aid}/acknowledge"
        r = await c.post(ack, json={"note": "looking"}, headers=auth(OPS))
        assert (r.status_code, r.json()["state"]) == (200, "acknowledged")
        assert (await c.post(ack, json={}, headers=auth(OPS))).status_code == 409
        assert (await c.post(ack, json={}, headers=auth(GP_OPS))).status_code == 404
        res = f"/api/v1/technical-alerts/{aid}/resolve"
        r = await c.post(res, json={}, headers=auth(OPS))
        assert (r.status_code, r.json()["state"], r.json()["note"]) == (200, "resolved", "looking")
        assert (await c.post(res, json={}, headers=auth(OPS))).status_code == 409
        assert (await c.post("/api/v1/technical-alerts/999999/resolve", json={},
                             headers=auth(OPS))).status_code == 404  # fmt: skip

    async with running(fresh_db, broker.url, prepare=False) as h:
        await send(h, [], [held(3)])
        assert h.query(
            "SELECT kind, count, state FROM technical_alerts WHERE kind = 'held-records' "
            "ORDER BY alert_id"
        ) == [("held-records", 1, "resolved"), ("held-records", 1, "open")]

    audit = (
        psycopg.connect(fresh_db)
        .execute("SELECT org_id, resource, patient_id, row_count FROM audit_events ORDER BY id")
        .fetchall()
    )
    assert ("rh", "held-records", None, 2) in audit
    assert ("gp", "held-records", None, 0) in audit
    assert ("rh", "held-record-dismiss", None, None) in audit
