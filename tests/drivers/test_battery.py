"""Battery Level 0x2A19.

Vectors: NordicSemiconductor/Android-BLE-Common-Library
``ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/battery/
BatteryLevelDataCallbackTest.java`` (0x64 full, 0x0F low, 0x65 out of range, ``64 00`` too long:
Nordic rejects it, the project accepts and flags it, reference §8.5).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.battery import DRIVERS, BatteryLevelRecord, decode_level
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement, Observation, Quantity
from tests.drivers.strategies import same


def level(data: bytes, value: int, flags: tuple[str, ...] = ()) -> Measurement:
    obs = Observation(
        codes.MDC_ATTR_VAL_BATT_CHARGE, Quantity(D(value), "%", codes.MDC_DIM_PERCENT)
    )
    return Measurement("2a19", data, (obs,), kind=Kind.DEVICE, flags=flags)


@pytest.mark.parametrize(("data", "value"), [(b"\x64", 100), (b"\x0f", 15), (b"\x00", 0)])
def test_levels(data: bytes, value: int) -> None:
    same(BatteryLevelRecord.parse(data), BatteryLevelRecord(value))
    assert BatteryLevelRecord(value).encode() == data
    same(decode_level(data), level(data, value))


def test_too_long_is_accepted_and_flagged() -> None:
    same(decode_level(b"\x64\x00"), level(b"\x64\x00", 100, ("trailing-octets:1",)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated: needs 1 octet(s), 0 left"),
        (b"\x65", "101 outside 0..100 %"),
        (b"\xff\x00", "255 outside 0..100 %"),
    ],
)
def test_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_level(data)
    e = exc.value
    assert (e.source, e.field, e.offset, e.reason) == ("2a19", "battery level", 0, reason)


def test_registry_entry() -> None:
    (d,) = DRIVERS
    assert (d.key, d.decode, d.transport, d.kind) == ("2a19", decode_level, "ble", Kind.DEVICE)
    assert d.characteristic == "00002a19-0000-1000-8000-00805f9b34fb"
    assert d.service == "0000180f-0000-1000-8000-00805f9b34fb"


@given(st.integers(0, 100))
def test_roundtrip(value: int) -> None:
    assert BatteryLevelRecord.parse(BatteryLevelRecord(value).encode()) == BatteryLevelRecord(value)


@given(st.binary(max_size=4))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_level(data)
    except DecodeError:
        assert not data or data[0] > 100
        return
    assert data[0] <= 100 and m.raw == data
