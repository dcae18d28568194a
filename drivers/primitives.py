"""``telehub decode`` keys for the building blocks: a bare SFLOAT or FLOAT, Date Time (0x2A08), and
single vendor frames (one Nonin DF2 frame, one Contec/BerryMed frame, one CMS50D-BT frame).

Each parser takes exactly the octets of one item (more or fewer is a DecodeError) and returns a
record with every field by name and raw value: the word, exponent and mantissa of a number; the
status octet as the integer and its set bits (reserved bits included) for a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from drivers.contec import BERRYMED_FLAG_NAMES, CONTEC_FLAG_NAMES, ContecFrame
from drivers.contec_bt import ContecBtFrame
from drivers.driver import Parser
from drivers.errors import DecodeError
from drivers.gatt_time import DATE_TIME_LEN, decode_date_time
from drivers.ieee11073 import decode_float, decode_sfloat
from drivers.nonin import NoninDf2Frame
from drivers.observation import DeviceTime, Special
from drivers.uuids import uuid16


def set_bits(value: int, width: int = 8) -> tuple[int, ...]:
    """The numbers of the set bits of ``value`` (b0 first)."""
    return tuple(i for i in range(width) if value >> i & 1)


def _exact(data: bytes, size: int, source: str, field: str) -> None:
    if len(data) != size:
        raise DecodeError(source, field, 0, f"exactly {size} octet(s), got {len(data)}")


@dataclass(frozen=True, slots=True)
class Number:
    """An IEEE 11073-20601 SFLOAT/FLOAT: the on-air word and its parts."""

    word: int
    exponent: int
    mantissa: int
    value: Decimal | None  # None for a special value
    special: Special | None


def _number(word: int, mant_bits: int, pair: tuple[Decimal | None, Special | None]) -> Number:
    exp_raw = word >> mant_bits
    mant_raw = word & ((1 << mant_bits) - 1)
    exp_bits = 4 if mant_bits == 12 else 8
    exponent = exp_raw - (1 << exp_bits) if exp_raw >> (exp_bits - 1) else exp_raw
    mantissa = mant_raw - (1 << mant_bits) if mant_raw >> (mant_bits - 1) else mant_raw
    return Number(word, exponent, mantissa, pair[0], pair[1])


def parse_sfloat(data: bytes) -> Number:
    """2 octets, little-endian."""
    _exact(data, 2, "sfloat", "sfloat")
    word = int.from_bytes(data, "little")
    return _number(word, 12, decode_sfloat(word))


def parse_float(data: bytes) -> Number:
    """4 octets, little-endian."""
    _exact(data, 4, "float", "float")
    word = int.from_bytes(data, "little")
    return _number(word, 24, decode_float(word))


def parse_date_time(data: bytes) -> DeviceTime:
    """Date Time 0x2A08: year (uint16, 0 = unknown), month, day (0 = unknown), h, min, s."""
    _exact(data, DATE_TIME_LEN, "2a08", "date time")
    return decode_date_time(data, 0, "2a08", "date time")


@dataclass(frozen=True, slots=True)
class Df2FrameFields:
    """One Nonin DF2 frame: STATUS as the integer and its set bits, then the decoded view."""

    status_word: int
    status_bits: tuple[int, ...]
    frame: NoninDf2Frame
    checksum: int


def parse_df2_frame(data: bytes) -> Df2FrameFields:
    frame = NoninDf2Frame.parse(data, "nonin-df2-frame")
    return Df2FrameFields(data[1], set_bits(data[1]), frame, data[4])


@dataclass(frozen=True, slots=True)
class ContecFrameFields:
    """One Contec/BerryMed 5-octet frame: both status octets raw, their set bits, the fields, and
    the flags by the vendor's own names."""

    status_b0: int
    status_b0_bits: tuple[int, ...]
    status_b2: int
    status_b2_bits: tuple[int, ...]
    frame: ContecFrame
    flags: tuple[str, ...]


def _contec_fields(
    data: bytes, source: str, names: tuple[str, str, str, str, str]
) -> ContecFrameFields:
    frame = ContecFrame.parse(data, source)
    return ContecFrameFields(
        data[0], set_bits(data[0]), data[2], set_bits(data[2]), frame, frame.flags_named(names)
    )


def parse_contec_frame(data: bytes) -> ContecFrameFields:
    return _contec_fields(data, "contec-frame", CONTEC_FLAG_NAMES)


def parse_berrymed_frame(data: bytes) -> ContecFrameFields:
    return _contec_fields(data, "berrymed-frame", BERRYMED_FLAG_NAMES)


@dataclass(frozen=True, slots=True)
class ContecBtFrameFields:
    """One CMS50D-BT frame: type, length, payload, checksum and the fields of its type."""

    type: int
    length: int
    payload: bytes
    checksum: int
    pulse_rate: int | None
    spo2: int | None
    reserved: bytes | None
    pleth: int | None


def parse_contec_bt_frame(data: bytes) -> ContecBtFrameFields:
    f = ContecBtFrame.parse(data, "contec-bt-frame")
    return ContecBtFrameFields(
        f.type, data[2], f.payload, f.checksum, f.pulse_rate, f.spo2, f.reserved, f.pleth
    )


PARSERS: tuple[Parser, ...] = (
    Parser("sfloat", "IEEE 11073 SFLOAT (2 octets, little-endian)", parse_sfloat),
    Parser("float", "IEEE 11073 FLOAT (4 octets, little-endian)", parse_float),
    Parser("2a08", "Date Time", parse_date_time, uuid16(0x2A08)),
    Parser("nonin-df2-frame", "Nonin Data Format 2: one 5-octet frame", parse_df2_frame),
    Parser("contec-frame", "Contec CMS50D+: one 5-octet frame", parse_contec_frame),
    Parser("berrymed-frame", "BerryMed BCI: one 5-octet frame", parse_berrymed_frame),
    Parser("contec-bt-frame", "Contec CMS50D-BT: one 0xEB frame", parse_contec_bt_frame),
)

__all__ = [
    "PARSERS",
    "ContecBtFrameFields",
    "ContecFrameFields",
    "Df2FrameFields",
    "Number",
    "parse_date_time",
    "parse_float",
    "parse_sfloat",
    "set_bits",
]
