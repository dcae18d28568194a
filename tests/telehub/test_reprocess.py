"""``telehub reprocess``: a driver bug shipped, readings were stored and alerted on with the wrong
value; after the fix, the stored raw bytes are decoded again.

The bug is planted in the real weight driver (Weight Measurement 0x2A9D, SI resolution 0.005 kg
read as 0.01 kg: every weight doubled), the readings travel the real path (edge mapping, MQTT,
ingester, rules) into PostgreSQL, then the driver is fixed and the command runs: a dry run that
writes nothing, an applied run that supersedes, re-inserts, enters the wrong alerts in error and
raises the right ones, and a second run that finds nothing left to do."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest

import drivers.weight
from drivers import registry
from drivers.observation import DeviceTime
from drivers.weight import WeightRecord
from edge.readings import RecordContext, to_readings
from gateway.alerting.templates import Programme
from gateway.fleet import Device, Fleet, Hub, Org, Patient, Rule
from telehub import reprocess
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import HUB, Harness, message, prepare_db, running

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Europe/Copenhagen")
NOW = datetime.now(UTC).replace(microsecond=0)
FLEET = Fleet(
    orgs=[Org(id="rh", name="Hospital", kind="hospital")],
    patients=[
        Patient(
            id=p,
            orgs=["rh"],
            programmes=[Programme.HEART_FAILURE],
            programmes_from=NOW - timedelta(days=30),
        )
        for p in ("p1", "p2")
    ],
    hubs=[Hub(id=HUB, org="rh")],
    devices=[
        Device(id="scale-1", hub=HUB, patient="p1"),
        Device(id="scale-2", hub=HUB, patient="p2"),
    ],
    rules=[
        Rule(
            key="weight-high",
            patient="p1",
            mdc=188736,
            op=">",
            threshold=Decimal(150),
            unit="kg",
            description="weight above 150 kg",
        )
    ],
)
DOUBLED = (Decimal("0.01"), Decimal("0.01"))  # the bug: 0.005 kg read as 0.01 kg


def _raw(kg: str, at: datetime) -> bytes:
    local = at.astimezone(TZ)
    stamp = DeviceTime(local.year, local.month, local.day, local.hour, local.minute, local.second)
    return WeightRecord(imperial=False, weight=Decimal(kg), time_stamp=stamp).encode()


def _reading(device: str, patient: str, raw: bytes, at: datetime) -> bytes:
    """What the edge sends for ``raw`` with the driver as it is now."""
    ctx = RecordContext(
        device=device,
        patient=patient,
        received_at=at + timedelta(seconds=5),
        received_ns=int((at + timedelta(seconds=5)).timestamp()) * 1_000_000_000,
        clock_set_by_hub=True,
        tz=TZ,
        hub_clock="synchronized",
    )
    [r] = to_readings(registry.decode("2a9d", raw), ctx)
    return msgspec.json.encode(r)


async def _send(h: Harness, readings: list[bytes]) -> str:
    """ "stored", "duplicate" or the rejection reasons, for a message of ``readings``."""
    _, payload = message(readings)
    await h.publish(payload)
    _, receipt = await h.receipt()
    if receipt.rejected:
        return "; ".join(r.reason for r in receipt.rejected)
    assert len(receipt.stored) + len(receipt.duplicates) == len(readings)
    return "duplicate" if receipt.duplicates else "stored"


async def _run(dsn: str, *args: str) -> tuple[int, dict[str, Any]]:
    """``telehub reprocess`` in this event loop: (exit code, its JSON)."""
    parsed = reprocess.parse(["--database-url", dsn, *args])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = await reprocess.run(parsed)
    return rc, json.loads(out.getvalue()) if out.getvalue() else {}


def _weights(dsn: str, *, current: bool) -> list[tuple[Any, ...]]:
    cond = "IS NULL" if current else "IS NOT NULL"
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT patient_id, value::text, time FROM readings "
            f"WHERE mdc = 188736 AND superseded_at {cond} ORDER BY patient_id, time"
        ).fetchall()


def _alerts(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT patient_id, rule_code, state, entered_in_error, reading_key "
            "FROM clinical_alerts ORDER BY alert_id"
        ).fetchall()


def _daily(h: Harness, day: datetime) -> list[tuple[Any, ...]]:
    """The materialised daily weights of ``day``'s bucket (not the live rows)."""
    return h.query(
        "SELECT patient_id, n::int, mean_value::numeric(6,1)::text FROM readings_daily_mat "
        "WHERE mdc = 188736 AND bucket > %s AND bucket <= %s ORDER BY patient_id",
        (day - timedelta(days=1), day),
    )


async def test_a_driver_fix_corrects_stored_readings_and_their_alerts(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    prepare_db(fresh_db, FLEET)
    day0 = NOW - timedelta(hours=26)  # its daily bucket is whole: materialised by a refresh
    base = NOW - timedelta(hours=50)
    raws = {
        "p1": (_raw("80.0", base), _raw("81.0", day0)),  # corrected: +1.0 kg, no alert
        "p2": (_raw("80.0", base), _raw("83.0", day0)),  # corrected: +3.0 kg, still W1
    }
    devices = {"p1": "scale-1", "p2": "scale-2"}
    async with running(fresh_db, broker.url, prepare=False) as h:
        for p, (b, _) in raws.items():
            assert await _send(h, [_reading(devices[p], p, b, base)]) == "stored"
        drivers.weight.MASS_STEP, fixed = DOUBLED, drivers.weight.MASS_STEP
        try:
            buggy = {p: _reading(devices[p], p, d, day0) for p, (_, d) in raws.items()}
        finally:
            drivers.weight.MASS_STEP = fixed
        for p in raws:
            assert await _send(h, [buggy[p]]) == "stored"
        assert [r[1] for r in _weights(fresh_db, current=True)] == [
            "80.000",
            "162.00",
            "80.000",
            "166.00",
        ]
        wrong = _alerts(fresh_db)
        assert {(a[0], a[1], a[2], a[3]) for a in wrong} >= {
            ("p1", "W1", "open", False),
            ("p2", "W1", "open", False),
        }
        assert h.query("SELECT count(*) FROM alerts WHERE acknowledged_at IS NULL") == [(1,)]
        before = h.query("SELECT count(*), sum(value) FROM readings")
        h.query("SELECT telehub_refresh_aggregates()")
        assert _daily(h, day0) == [("p1", 1, "162.0"), ("p2", 1, "166.0")]

        # the dry run shows the change and writes nothing
        rc, dry = await _run(fresh_db, "--source", "2a9d")
        assert rc == 0
        assert dry["summary"] == {
            "records": 4,
            "readings": 4,
            "unchanged": 2,
            "changed": 2,
            "added": 0,
            "removed": 0,
            "problems": 0,
        }
        assert dry["applied"] is None
        changes = {c["patient"]: c for c in dry["changes"]}
        assert changes["p1"]["fields"] == ["value"]
        assert (changes["p1"]["old"]["value"], changes["p1"]["new"]["value"]) == (
            "162.00",
            "81.000",
        )
        assert h.query("SELECT count(*), sum(value) FROM readings") == before
        assert h.query("SELECT count(*) FROM reprocess_runs") == [(0,)]

        # an applied run needs a reason; a time without a zone is refused
        with pytest.raises(SystemExit) as exc:
            await _run(fresh_db, "--apply")
        assert exc.value.code == 2
        with pytest.raises(SystemExit) as exc:
            await _run(fresh_db, "--since", "2026-01-01T00:00:00")
        assert exc.value.code == 2

        rc, done = await _run(
            fresh_db, "--source", "2a9d", "--apply", "--reason", "2a9d SI resolution fix",
            "--actor", "dev-a",
        )  # fmt: skip
        assert rc == 0
        applied = done["applied"]
        assert (applied["superseded"], applied["inserted"], applied["linked_existing"]) == (2, 2, 0)
        assert applied["legacy_alerts_closed"] == 1
        assert [r[1] for r in _weights(fresh_db, current=True)] == [
            "80.000",
            "81.000",
            "80.000",
            "83.000",
        ]
        assert [r[1] for r in _weights(fresh_db, current=False)] == ["162.00", "166.00"]
        after = _alerts(fresh_db)
        # every alert of the wrong readings is entered in error; p2's corrected weight raises W1
        assert all(a[3] and a[2] == "resolved" for a in after[: len(wrong)])
        assert sorted(applied["alerts_entered_in_error"]) == sorted(
            i
            for (i,) in h.query(
                "SELECT alert_id FROM clinical_alerts WHERE entered_in_error ORDER BY alert_id"
            )
        )
        fresh = [a for a in after[len(wrong) :]]
        assert [(a[0], a[1], a[2], a[3]) for a in fresh if a[1] == "W1"] == [
            ("p2", "W1", "open", False)
        ]
        assert not [a for a in fresh if a[0] == "p1" and a[1] == "W1"]
        events = h.query(
            "SELECT e.type, e.actor, e.payload ->> 'reprocess_run' FROM alert_event e "
            "JOIN clinical_alerts a USING (alert_id) WHERE a.entered_in_error AND "
            "e.type = 'invalidated'"
        )
        assert len(events) == len(applied["alerts_entered_in_error"])
        assert {e[1] for e in events} == {"reprocess:dev-a"}
        assert {e[2] for e in events} == {str(applied["run"])}
        assert h.query("SELECT count(*) FROM alerts WHERE acknowledged_at IS NULL") == [(0,)]
        assert h.query("SELECT actor, reason, summary ->> 'changed' FROM reprocess_runs") == [
            ("dev-a", "2a9d SI resolution fix", "2")
        ]
        assert h.query(
            "SELECT change, patient_id, diff -> 'fields' FROM reading_versions ORDER BY patient_id"
        ) == [("changed", "p1", ["value"]), ("changed", "p2", ["value"])]
        # the day's aggregate counts the corrected weight only
        assert _daily(h, day0) == [("p1", 1, "81.0"), ("p2", 1, "83.0")]

        # the hub re-sends the wrong record (a meter re-sending its memory): still a duplicate
        assert await _send(h, [buggy["p1"]]) == "duplicate"
        assert len(_weights(fresh_db, current=True)) == 4

    # nothing left to do
    rc, again = await _run(
        fresh_db, "--source", "2a9d", "--apply", "--reason", "again", "--actor", "dev-a"
    )
    assert rc == 0
    assert again["summary"]["changed"] == 0 and again["summary"]["unchanged"] == 4
    assert again["applied"] is None


async def test_records_that_no_longer_decode_are_listed_and_left(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    prepare_db(fresh_db, FLEET)
    at = NOW - timedelta(hours=2)
    async with running(fresh_db, broker.url, prepare=False) as h:
        good = _reading("scale-1", "p1", _raw("80.0", at), at)
        bad = msgspec.json.decode(_reading("scale-2", "p2", _raw("90.0", at), at))
        assert await _send(h, [good, msgspec.json.encode(bad)]) == "stored"
    with psycopg.connect(fresh_db) as conn:  # a record whose bytes the driver now refuses
        conn.execute("UPDATE readings SET raw = '\\x0100'::bytea WHERE device_id = 'scale-2'")
        conn.execute(
            "UPDATE readings SET raw = %s WHERE device_id = 'scale-1'", (_raw("79.5", at),)
        )
    rc, out = await _run(
        fresh_db, "--apply", "--reason", "test", "--actor", "dev-a", "--since",
        (at - timedelta(minutes=1)).isoformat(),
    )  # fmt: skip
    assert rc == 0
    [problem] = out["problems"]
    assert problem["device"] == "scale-2" and "does not decode" in problem["reason"]
    # the other record decodes (to 79.5 kg now: its stored bytes were changed) and is corrected
    assert out["summary"]["changed"] == 1
    assert [c["new"]["value"] for c in out["changes"]] == ["79.500"]
    assert out["applied"]["superseded"] == 1
    assert [r[1] for r in _weights(fresh_db, current=True)] == ["79.500", "90.000"]
