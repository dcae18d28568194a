"""Heart Rate Measurement 0x2A37.

Vectors: NordicSemiconductor/Android-BLE-Common-Library
``ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/hr/
HeartRateMeasurementDataCallbackTest.java`` (every test vector of that file).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.errors import DecodeError
from drivers.heart_rate import DRIVERS, HeartRateRecord, decode_measurement
from drivers.observation import Kind, Measurement, Observation, Quantity
from tests.drivers.strategies import same


def hr(value: int) -> Observation:
    return Observation(
        codes.MDC_ECG_HEART_RATE,
        Quantity(D(value), "/min", codes.MDC_DIM_BEAT_PER_MIN),
        ("8867-4",),
    )


def m(data: bytes, value: int, flags: tuple[str, ...] = ()) -> Measurement:
    return Measurement("2a37", data, (hr(value),), kind=Kind.CONTINUOUS, flags=flags)


def test_nordic_simple() -> None:
    data = bytes([0, 85])
    same(HeartRateRecord.parse(data), HeartRateRecord(85))
    same(decode_measurement(data), m(data, 85))


def test_nordic_no_contact() -> None:
    data = bytes([0x4, 0xFF])  # contact supported, not detected
    rec = HeartRateRecord(255, sensor_contact_bits=2)
    same(HeartRateRecord.parse(data), rec)
    assert rec.sensor_contact == "not-detected"
    same(decode_measurement(data), m(data, 255, ("sensor-contact:not-detected",)))


def test_nordic_uint8_energy_rr() -> None:
    data = bytes([0b11110, 85, 50, 0, 33, 0])
    rec = HeartRateRecord(85, False, 3, 50, (33,))
    same(HeartRateRecord.parse(data), rec)
    assert rec.encode() == data
    assert rec.rr_seconds == (D("0.0322265625"),)  # 33/1024 s, exact
    same(decode_measurement(data), m(data, 85, ("sensor-contact:detected",)))


def test_nordic_uint16() -> None:
    data = bytes([0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF])
    rec = HeartRateRecord(257, True, 3, 306, (1, 258, 65535))
    same(HeartRateRecord.parse(data), rec)
    assert rec.encode() == data
    assert rec.rr_seconds == (D("0.0009765625"), D("0.251953125"), D("63.9990234375"))
    same(decode_measurement(data), m(data, 257, ("sensor-contact:detected",)))


def test_uint16_small_value_and_contact_bit_1_roundtrip() -> None:
    data = bytes([0b011, 60, 0])  # uint16 format carrying 60; contact bits 01 = not supported
    rec = HeartRateRecord.parse(data)
    assert (rec, rec.sensor_contact, rec.rr_seconds) == (
        HeartRateRecord(60, True, 1),
        "not-supported",
        None,
    )
    assert rec.encode() == data
    same(decode_measurement(data), m(data, 60))


def test_trailing_octets_without_rr() -> None:
    data = bytes([0, 70, 0xAA, 0xBB])
    same(decode_measurement(data), m(data, 70, ("trailing-octets:2",)))


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("", "flags", 0, "truncated: needs 1 octet(s), 0 left"),
        ("00", "heart rate", 1, "truncated: needs 1 octet(s), 0 left"),
        ("0101", "heart rate", 1, "truncated: needs 2 octet(s), 1 left"),
        ("085532", "energy expended", 2, "truncated: needs 2 octet(s), 1 left"),
        # Nordic onInvalidDataReceived: RR flag set, no RR interval.
        (
            "170101",
            "rr intervals",
            3,
            "0 octet(s) left: needs a non-empty whole number of uint16",
        ),
        (
            "10552100ff",
            "rr intervals",
            2,
            "3 octet(s) left: needs a non-empty whole number of uint16",
        ),
    ],
)
def test_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_measurement(bytes.fromhex(data))
    e = exc.value
    assert (e.source, e.field, e.offset, e.reason) == ("2a37", field, offset, reason)


def test_registry_entry() -> None:
    (d,) = DRIVERS
    assert (d.key, d.decode, d.transport, d.kind) == (
        "2a37",
        decode_measurement,
        "ble",
        Kind.CONTINUOUS,
    )
    assert d.characteristic == "00002a37-0000-1000-8000-00805f9b34fb"
    assert d.service == "0000180d-0000-1000-8000-00805f9b34fb"


@st.composite
def records(draw: st.DrawFn) -> HeartRateRecord:
    wide = draw(st.booleans())
    return HeartRateRecord(
        heart_rate=draw(st.integers(0, 0xFFFF if wide else 0xFF)),
        uint16=wide,
        sensor_contact_bits=draw(st.integers(0, 3)),
        energy_expended=draw(st.none() | st.integers(0, 0xFFFF)),
        rr_intervals=draw(
            st.none() | st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=9).map(tuple)
        ),
    )


@given(records())
def test_roundtrip(rec: HeartRateRecord) -> None:
    assert HeartRateRecord.parse(rec.encode()) == rec
    if rec.rr_intervals is not None:
        assert rec.rr_seconds is not None
        assert [s * 1024 for s in rec.rr_seconds] == list(rec.rr_intervals)


@given(st.binary(max_size=20))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_measurement(data)
    except DecodeError:
        return
    assert (m.raw, len(m.observations)) == (data, 1)
