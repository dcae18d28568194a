"""Decode keys for the building blocks (drivers.primitives).

Vectors are built by hand from the definitions, not by our encoders:
* SFLOAT/FLOAT: IEEE 11073-20601 as in the reference §1 (value = mantissa x 10^exponent; SFLOAT
  4-bit exponent over a 12-bit mantissa, FLOAT 8 over 24, both two's complement, little-endian on
  air; 0x07FF / 0x007FFFFF = NaN). 36.4 as FLOAT is ``6C 01 00 FF`` (mantissa 364 = 0x00016C,
  exponent -1 = 0xFF), the value the Zephyr ``peripheral_ht`` sample sends.
* Date Time 0x2A08: GATT XML ``org.bluetooth.characteristic.date_time`` (year uint16 LE, month,
  day, hours, minutes, seconds; year/month/day 0 = unknown).
* Nonin DF2 frame: reference §6.2 (01, STATUS with b7 set, PLETH, value, sum of octets 0-3).
* Contec/BerryMed and CMS50D-BT frames: reference §6.3 (see test_contec / test_contec_bt).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from drivers.errors import DecodeError
from drivers.observation import Special
from drivers.primitives import (
    parse_berrymed_frame,
    parse_contec_bt_frame,
    parse_contec_frame,
    parse_date_time,
    parse_df2_frame,
    parse_float,
    parse_sfloat,
    set_bits,
)
from drivers.registry import REGISTRY


@pytest.mark.parametrize(
    ("hex_", "word", "exponent", "mantissa", "value", "special"),
    [
        ("72f0", 0xF072, -1, 114, D("11.4"), None),  # 0xF072: exp 0xF = -1, mant 0x072 = 114
        ("0120", 0x2001, 2, 1, D("1E+2"), None),  # exp +2, mant 1 = 100
        ("ff0f", 0x0FFF, 0, -1, D(-1), None),  # mant 0xFFF = -1
        ("ff07", 0x07FF, 0, 2047, None, Special.NAN),
    ],
)
def test_sfloat(
    hex_: str, word: int, exponent: int, mantissa: int, value: D | None, special: Special | None
) -> None:
    n = parse_sfloat(bytes.fromhex(hex_))
    assert (n.word, n.exponent, n.mantissa, n.value, n.special) == (
        word,
        exponent,
        mantissa,
        value,
        special,
    )


@pytest.mark.parametrize(
    ("hex_", "exponent", "mantissa", "value", "special"),
    [
        ("6c0100ff", -1, 364, D("36.4"), None),
        ("ffffff00", 0, -1, D(-1), None),
        ("ffff7f00", 0, 0x7FFFFF, None, Special.NAN),
    ],
)
def test_float(
    hex_: str, exponent: int, mantissa: int, value: D | None, special: Special | None
) -> None:
    n = parse_float(bytes.fromhex(hex_))
    assert (n.exponent, n.mantissa, n.value, n.special) == (exponent, mantissa, value, special)


@pytest.mark.parametrize(
    ("fn", "data"),
    [
        (parse_sfloat, b"\x72"),
        (parse_float, b"\x6c\x01\x00"),
        (parse_date_time, bytes(8)),
    ],
)
def test_exact_length(fn: object, data: bytes) -> None:
    with pytest.raises(DecodeError) as ei:
        fn(data)  # type: ignore[operator]
    assert ei.value.offset == 0 and "exactly" in ei.value.reason


def test_date_time_known_and_unknown() -> None:
    t = parse_date_time(bytes.fromhex("e4070c1f173b3b"))  # 0x07E4 = 2020, 12, 31, 23:59:59
    assert (t.year, t.month, t.day, t.hours, t.minutes, t.seconds) == (2020, 12, 31, 23, 59, 59)
    u = parse_date_time(bytes(7))
    assert u.naive() is None  # all zero = unknown, not 0000-00-00
    assert REGISTRY.resolve("0x2A08") == "2a08"


def test_df2_single_frame_raw_status() -> None:
    # 01 81 40 4A: STATUS 0x81 (b7 | b0 SYNC), pleth 64, value 74; 1+129+64+74 = 268 -> 0x0C
    f = parse_df2_frame(bytes.fromhex("0181404a0c"))
    assert (f.status_word, f.status_bits, f.checksum) == (0x81, (0, 7), 0x0C)
    assert f.frame.sync and (f.frame.pleth, f.frame.value) == (64, 74)


def test_contec_frame_fields_and_vendor_names() -> None:
    # B0 0x96: sync | b4 | signal strength 6; B1 pleth 0x3F; B2 0x25: b5 | bar graph 5
    raw = bytes.fromhex("963f254861")
    c = parse_contec_frame(raw)
    assert (c.status_b0, c.status_b0_bits, c.status_b2, c.status_b2_bits) == (
        0x96,
        (1, 2, 4, 7),
        0x25,
        (0, 2, 5),
    )
    assert (c.frame.signal_strength, c.frame.pleth, c.frame.bar_graph) == (6, 63, 5)
    assert c.flags == ("finger-out", "searching")
    assert parse_berrymed_frame(raw).flags == ("no-signal", "searching")


def test_contec_bt_frame_fields() -> None:
    p = parse_contec_bt_frame(bytes.fromhex("eb010548627f001a"))
    assert (p.type, p.length, p.pulse_rate, p.spo2, p.reserved, p.checksum) == (
        1,
        5,
        72,
        98,
        b"\x7f\x00",
        0x1A,
    )
    w = parse_contec_bt_frame(bytes.fromhex("eb0002402d"))
    assert (w.type, w.pleth, w.pulse_rate) == (0, 64, None)


def test_set_bits() -> None:
    assert set_bits(0) == ()
    assert set_bits(0xA0) == (5, 7)
    assert set_bits(0x8000, 16) == (15,)
