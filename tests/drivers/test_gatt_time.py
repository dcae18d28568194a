"""GATT Date Time (0x2A08) and Current Time (0x2A2B)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from drivers.errors import DecodeError
from drivers.gatt_time import (
    CurrentTime,
    decode_current_time,
    decode_date_time,
    device_time_from,
    encode_current_time,
    encode_date_time,
    need,
)
from drivers.observation import DeviceTime
from tests.drivers.strategies import device_times


def test_date_time_known_and_unknown_fields() -> None:
    t = decode_date_time(bytes.fromhex("e107 01 10 0c 27 36".replace(" ", "")), 0, "2a35")
    assert t == DeviceTime(2017, 1, 16, 12, 39, 54)
    assert t.known and t.naive() == datetime(2017, 1, 16, 12, 39, 54)
    # Year 0 = unknown (Nordic BPM _full vector): raw fields kept, no ISO time.
    u = decode_date_time(bytes.fromhex("0000 04 11 14 29 3b".replace(" ", "")), 0, "2a35")
    assert u == DeviceTime(0, 4, 17, 20, 41, 59)
    assert not u.known and u.naive() is None
    assert decode_date_time(bytes(7), 0, "x") == DeviceTime(0, 0, 0, 0, 0, 0)
    # Day 31 is accepted when the month is unknown; 29 Feb only in leap years.
    assert decode_date_time(bytes.fromhex("e807 00 1f 000000"), 0, "x").day == 31
    assert decode_date_time(bytes.fromhex("e807 02 1d 000000"), 0, "x").day == 29
    assert DeviceTime(2024, 1, 1, 0, 0, 0, offset_minutes=-90).naive() == datetime(
        2023, 12, 31, 22, 30
    )


@pytest.mark.parametrize(
    ("hexdata", "field", "offset", "reason"),
    [
        ("e807 0d 01 000000", "ts.month", 3, "13 outside 1..12 (0 = unknown)"),
        ("e707 02 1d 000000", "ts.day", 4, "29 outside 1..28 (0 = unknown)"),
        ("e807 01 20 000000", "ts.day", 4, "32 outside 1..31 (0 = unknown)"),
        ("2d06 01 01 000000", "ts.year", 1, "1581 outside 1582..9999 (0 = unknown)"),
        ("1027 01 01 000000", "ts.year", 1, "10000 outside 1582..9999 (0 = unknown)"),
        ("e807 01 01 180000", "ts.hours", 5, "24 outside 0..23"),
        ("e807 01 01 003c00", "ts.minutes", 6, "60 outside 0..59"),
        ("e807 01 01 00003c", "ts.seconds", 7, "60 outside 0..59"),
        ("e807 01 01 0000", "ts", 1, "truncated: needs 7 octet(s), 6 left"),
    ],
)
def test_date_time_errors(hexdata: str, field: str, offset: int, reason: str) -> None:
    data = b"\xaa" + bytes.fromhex(hexdata.replace(" ", ""))
    with pytest.raises(DecodeError) as err:
        decode_date_time(data, 1, "src", "ts")
    assert (err.value.source, err.value.field, err.value.offset, err.value.reason) == (
        "src",
        field,
        offset,
        reason,
    )


def test_need() -> None:
    need(b"abc", 1, 2, "s", "f")
    with pytest.raises(DecodeError, match="s: f at offset 5: truncated: needs 1 octet"):
        need(b"abc", 5, 1, "s", "f")


def test_current_time_reference_example() -> None:
    # Reference §1.3: e8 07 05 11 0e 03 09 05 80 01 = 2024-05-17 14:03:09, Friday, 128/256 s,
    # manual update.
    data = bytes.fromhex("e80705110e030905 8001".replace(" ", ""))
    assert decode_current_time(data) == CurrentTime(
        DeviceTime(2024, 5, 17, 14, 3, 9), 5, 128, ("manual-time-update",), data
    )
    assert encode_current_time(datetime(2024, 5, 17, 14, 3, 9), fractions256=128) == data
    all_reasons = decode_current_time(data[:9] + b"\x0f" + b"\xff")
    assert all_reasons.adjust_reasons == (
        "manual-time-update",
        "external-reference-time-update",
        "change-of-time-zone",
        "change-of-dst",
    )
    assert all_reasons.raw == data[:9] + b"\x0f"  # trailing octets not kept in the record


def test_current_time_errors() -> None:
    with pytest.raises(DecodeError, match=r"2a2b: day of week at offset 7: 8 outside 1\.\.7"):
        decode_current_time(bytes.fromhex("e80705110e0309 08 8001".replace(" ", "")))
    with pytest.raises(DecodeError, match="2a2b: day of week/fractions/adjust reason at offset 7"):
        decode_current_time(bytes.fromhex("e80705110e0309 05 80".replace(" ", "")))
    with pytest.raises(DecodeError, match="2a2b: exact time at offset 0: truncated"):
        decode_current_time(b"")


@given(device_times())
def test_date_time_roundtrip(t: DeviceTime) -> None:
    assert decode_date_time(encode_date_time(t), 0, "x") == t


def test_device_time_from() -> None:
    assert device_time_from(datetime(2024, 2, 29, 23, 59, 58)) == DeviceTime(
        2024, 2, 29, 23, 59, 58
    )
