from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from edge.clock import (
    FLAG_AMBIGUOUS,
    FLAG_NONEXISTENT,
    _adjtimex_state,
    hub_clock_state,
    local_to_utc,
)
from edge.readings import RecordContext, time_token, to_readings
from wire import contract

CPH = ZoneInfo("Europe/Copenhagen")
RX = datetime(2024, 5, 17, 12, 30, 0, tzinfo=UTC)
RX_NS = int(RX.timestamp()) * 1_000_000_000


def ctx(**kw: object) -> RecordContext:
    base = RecordContext(
        device="00:09:1F:8A:12:34",
        patient="patient-a",
        received_at=RX,
        received_ns=RX_NS,
        clock_set_by_hub=True,
        tz=CPH,
        hub_clock="synchronized",
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def mmhg(v: str) -> Quantity:
    return Quantity(Decimal(v), "mm[Hg]", 266016)


TS = DeviceTime(2024, 5, 17, 14, 3, 9)


def bp(ts: DeviceTime | None = TS, **kw: object) -> Measurement:
    m = Measurement(
        source="2a35",
        raw=bytes.fromhex("1e7800500060000000"),
        observations=(
            Observation(150021, mmhg("120"), ("8480-6",), panel=150020),
            Observation(150022, mmhg("80.0"), ("8462-4",), panel=150020),
            Observation(
                149546, Quantity(Decimal("62"), "/min", 264864), ("8867-4",), flags=("pulse-rate",)
            ),
        ),
        kind=Kind.SPOT,
        timestamp=ts,
        user_id=1,
        flags=("irregular-pulse",),
    )
    return dataclasses.replace(m, **kw)  # type: ignore[arg-type]


def test_bp_record_becomes_three_readings_with_every_field() -> None:
    rs = to_readings(bp(), ctx())
    token = "2024-05-17T14:03:09"
    group = contract.idempotency_key(
        device="00:09:1F:8A:12:34",
        patient="patient-a",
        mdc=0,
        time_token=token,
        supplemental="2a35:1e7800500060000000",
    )
    reading = functools.partial(
        contract.Reading,
        device="00:09:1F:8A:12:34",
        patient="patient-a",
        source="2a35",
        kind="spot",
        group=group,
        time=datetime(2024, 5, 17, 12, 3, 9, tzinfo=UTC),
        time_source="device",
        device_time="2024-05-17T14:03:09",
        received_at=RX,
        hub_clock="synchronized",
        sequence=None,
        user_id=1,
        raw="1e7800500060000000",
    )

    def key(mdc: int, value: str) -> str:
        return contract.idempotency_key(
            device="00:09:1F:8A:12:34",
            patient="patient-a",
            mdc=mdc,
            time_token=token,
            supplemental=f"2a35:{value}",
        )

    assert rs == [
        reading(
            key=key(150021, "120mm[Hg]"),
            mdc=150021,
            loinc=["8480-6"],
            unit="mm[Hg]",
            mdc_unit=266016,
            value="120",
            panel=150020,
            flags=["irregular-pulse"],
        ),
        reading(
            key=key(150022, "80.0mm[Hg]"),
            mdc=150022,
            loinc=["8462-4"],
            unit="mm[Hg]",
            mdc_unit=266016,
            value="80.0",
            panel=150020,
            flags=["irregular-pulse"],
        ),
        reading(
            key=key(149546, "62/min"),
            mdc=149546,
            loinc=["8867-4"],
            unit="/min",
            mdc_unit=264864,
            value="62",
            flags=["irregular-pulse", "pulse-rate"],
        ),
    ]
    # round-trips through the wire encoding unchanged
    assert [contract.decode_reading(contract.encode(r)) for r in rs] == rs


def test_keys_stable_for_a_replayed_record_and_distinct_otherwise() -> None:
    first = [r.key for r in to_readings(bp(), ctx())]
    # A&D re-sends its memory on a later connection: other receive time, clock state -> same keys
    later = ctx(
        received_at=datetime(2024, 6, 1, tzinfo=UTC),
        received_ns=RX_NS + 10**15,
        clock_set_by_hub=False,
    )
    assert [r.key for r in to_readings(bp(), later)] == first
    assert len(set(first)) == 3
    others = [
        to_readings(bp(DeviceTime(2024, 5, 17, 14, 3, 10)), ctx()),
        to_readings(bp(), ctx(patient="patient-b")),
        to_readings(bp(), ctx(device="00:09:1F:8A:12:35")),
        to_readings(bp(sequence=7), ctx()),
    ]
    keys = {r.key for rs in others for r in rs}
    assert len(keys) == 12 and not keys & set(first)


def test_same_timestamp_different_values_do_not_collapse() -> None:
    """A device that only knows the time of day sends 14:03:09 on two days: two measurements."""
    unknown = DeviceTime(0, 0, 0, 14, 3, 9)
    day1 = to_readings(bp(unknown), ctx())
    other = dataclasses.replace(
        bp(unknown),
        raw=b"\x01",
        observations=(
            Observation(150021, mmhg("135"), ("8480-6",), panel=150020),
            *bp().observations[1:],
        ),
    )
    day2 = to_readings(other, ctx())
    assert day1[0].key != day2[0].key and day1[0].group != day2[0].group
    assert day1[1].key == day2[1].key  # same diastolic at the same time: indistinguishable


def test_continuous_key_is_the_receive_time_fixed_once() -> None:
    m = Measurement(
        source="2a5f",
        raw=b"\x00\x62\x00\x48\x00",
        kind=Kind.CONTINUOUS,
        observations=(
            Observation(150456, Quantity(Decimal("98"), "%", 262688)),
            Observation(150456, Quantity(Decimal("97"), "%", 262688), flags=("modality:fast",)),
        ),
    )
    a = to_readings(m, ctx())
    assert time_token(m, RX_NS) == f"rx{RX_NS}"
    assert [(r.time, r.time_source, r.device_time) for r in a] == [(RX, "hub", None)] * 2
    assert a[0].key != a[1].key  # same MDC twice in one record: still distinct
    assert [r.key for r in to_readings(m, ctx())] == [r.key for r in a]
    assert {r.key for r in to_readings(m, ctx(received_ns=RX_NS + 1))}.isdisjoint(
        {r.key for r in a}
    )


def test_glucose_token_has_sequence_and_raw_time_with_offset() -> None:
    ts = DeviceTime(2024, 5, 17, 14, 0, 0, offset_minutes=5)
    m = Measurement(
        source="2a18",
        raw=b"\x03",
        sequence=42,
        timestamp=ts,
        observations=(
            Observation(
                160184,
                Quantity(Decimal("105"), "mg/dL", 264274),
                original=Quantity(Decimal("0.00105"), "kg/L", 0),
            ),
        ),
    )
    assert time_token(m, RX_NS) == "seq42@2024-05-17T14:00:00+5m"
    [r] = to_readings(m, ctx())
    assert (r.time, r.device_time, r.sequence) == (
        datetime(2024, 5, 17, 12, 5, tzinfo=UTC),
        "2024-05-17T14:05:00",
        42,
    )
    assert (r.value, r.orig_value, r.orig_unit) == ("105", "0.00105", "kg/L")


def _prov(m: Measurement, c: RecordContext) -> tuple[datetime, str, str | None, list[str]]:
    r = to_readings(m, c)[0]
    return r.time, r.time_source, r.device_time, r.flags


def test_clock_provenance() -> None:
    local = datetime(2024, 5, 17, 12, 3, 9, tzinfo=UTC)
    assert _prov(bp(), ctx()) == (local, "device", "2024-05-17T14:03:09", ["irregular-pulse"])
    assert _prov(bp(), ctx(clock_set_by_hub=False)) == (
        local,
        "device-unverified",
        "2024-05-17T14:03:09",
        ["irregular-pulse"],
    )
    # PLX "device clock is not set": receive time, raw fields kept, flagged
    assert _prov(bp(clock_set=False), ctx()) == (
        RX,
        "device-unset",
        "2024-05-17T14:03:09",
        ["irregular-pulse", "device-clock-not-set"],
    )
    # unknown date (year/month/day 0): receive time, raw fields kept
    unknown = DeviceTime(0, 0, 0, 14, 3, 9)
    assert _prov(bp(unknown), ctx()) == (
        RX,
        "device-unset",
        "0000-00-00T14:03:09",
        ["irregular-pulse", "device-date-unknown"],
    )
    # a device clock reset to 2000-01-01 (stamped before the hub set it): receive time, flagged
    reset = DeviceTime(2000, 1, 1, 0, 4, 10)
    assert _prov(bp(reset), ctx()) == (
        RX,
        "device-unset",
        "2000-01-01T00:04:10",
        ["irregular-pulse", "device-clock-implausible"],
    )
    # ... and one more than a day ahead of the hub
    ahead = DeviceTime(2024, 5, 19, 12, 0, 0)
    assert _prov(bp(ahead), ctx()) == (
        RX,
        "device-unset",
        "2024-05-19T12:00:00",
        ["irregular-pulse", "device-clock-implausible"],
    )
    # a reading stored on the device for months is still the device's time
    old = DeviceTime(2024, 1, 2, 8, 0, 0)
    assert _prov(bp(old), ctx())[:2] == (datetime(2024, 1, 2, 7, 0, tzinfo=UTC), "device")
    # no timestamp at all
    assert _prov(bp(None), ctx()) == (RX, "hub", None, ["irregular-pulse"])
    # the key of an unknown-date record uses the raw fields (stable across replays)
    assert (
        to_readings(bp(unknown), ctx())[0].key
        == to_readings(bp(unknown), ctx(received_ns=1))[0].key
    )


def test_dst_gap_and_overlap_in_copenhagen() -> None:
    # 2024-03-31 02:30 never happened (clocks went 02:00 -> 03:00): fold=0 (+01:00), flagged
    gap = bp(DeviceTime(2024, 3, 31, 2, 30, 0))
    assert _prov(gap, ctx()) == (
        datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
        "device",
        "2024-03-31T02:30:00",
        ["irregular-pulse", FLAG_NONEXISTENT],
    )
    # 2024-10-27 02:30 happened twice: fold=0 (the first, +02:00), flagged
    overlap = bp(DeviceTime(2024, 10, 27, 2, 30, 0))
    autumn = ctx(received_at=datetime(2024, 10, 27, 9, 0, tzinfo=UTC))
    assert _prov(overlap, autumn) == (
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        "device",
        "2024-10-27T02:30:00",
        ["irregular-pulse", FLAG_AMBIGUOUS],
    )
    # either side of the transitions: unflagged
    assert local_to_utc(datetime(2024, 10, 27, 3, 30), CPH) == (
        datetime(2024, 10, 27, 2, 30, tzinfo=UTC),
        (),
    )
    assert local_to_utc(datetime(2024, 3, 31, 1, 59, 59), CPH) == (
        datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC),
        (),
    )
    assert local_to_utc(datetime(2024, 3, 31, 3, 0), CPH) == (
        datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        (),
    )


def test_special_values_and_non_forwarded_kinds() -> None:
    nan = Measurement(
        source="2a1c",
        raw=b"\x00",
        observations=(Observation(150364, Quantity(None, "Cel", 268192, Special.NAN)),),
    )
    [r] = to_readings(nan, ctx())
    assert (r.value, r.special) == (None, "nan")
    for kind in (Kind.INTERMEDIATE, Kind.CONTROL, Kind.DEVICE):
        assert to_readings(dataclasses.replace(nan, kind=kind), ctx()) == []


def test_hub_clock_state(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()
    assert hub_clock_state(flag) == "synchronized"
    state = _adjtimex_state()
    assert state is not None and 0 <= state <= 5  # Linux: TIME_OK..TIME_ERROR
    expected = "unsynchronized" if state == 5 else "synchronized"
    assert hub_clock_state(tmp_path / "missing") == expected


@pytest.mark.parametrize("tzname", ["Europe/Copenhagen", "America/New_York"])
def test_local_to_utc_round_trips_ordinary_times(tzname: str) -> None:
    tz = ZoneInfo(tzname)
    naive = datetime(2024, 7, 1, 9, 15)
    utc, flags = local_to_utc(naive, tz)
    assert flags == () and utc.astimezone(tz).replace(tzinfo=None) == naive
