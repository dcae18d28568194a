"""Shared helpers for the GATT decoders: a reading cursor that knows its offset, and encoders.

Every read names its field, so a short or invalid record raises a :class:`DecodeError` that says
which field, at which offset, and why. Little-endian unless a method says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from drivers.errors import DecodeError
from drivers.gatt_time import DATE_TIME_LEN, decode_date_time, encode_date_time
from drivers.ieee11073 import decode_float, decode_sfloat, encode_float, encode_sfloat
from drivers.observation import DeviceTime, Special

#: An SFLOAT/FLOAT field as the record keeps it: a number or a special value.
Number = Decimal | Special


def _number(pair: tuple[Decimal | None, Special | None]) -> Number:
    value, special = pair
    if special is not None:
        return special
    assert value is not None
    return value


class Cursor:
    """Reads fields from ``data`` left to right, tracking the offset for error messages."""

    __slots__ = ("data", "offset", "source")

    def __init__(self, data: bytes, source: str, offset: int = 0) -> None:
        self.data = bytes(data)
        self.source = source
        self.offset = offset

    def error(self, field: str, reason: str, offset: int | None = None) -> DecodeError:
        return DecodeError(self.source, field, self.offset if offset is None else offset, reason)

    def take(self, size: int, field: str) -> bytes:
        left = len(self.data) - self.offset
        if left < size:
            raise self.error(field, f"truncated: needs {size} octet(s), {max(left, 0)} left")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def uint(self, size: int, field: str, *, big_endian: bool = False) -> int:
        return int.from_bytes(self.take(size, field), "big" if big_endian else "little")

    def u8(self, field: str) -> int:
        return self.uint(1, field)

    def u16(self, field: str) -> int:
        return self.uint(2, field)

    def u24(self, field: str) -> int:
        return self.uint(3, field)

    def u32(self, field: str) -> int:
        return self.uint(4, field)

    def s16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little", signed=True)

    def sfloat(self, field: str) -> Number:
        return _number(decode_sfloat(self.u16(field)))

    def float32(self, field: str) -> Number:
        return _number(decode_float(self.u32(field)))

    def date_time(self, field: str = "time stamp") -> DeviceTime:
        t = decode_date_time(self.data, self.offset, self.source, field)
        self.offset += DATE_TIME_LEN
        return t

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset


# -- flags -------------------------------------------------------------------------------------
def bit(value: int, n: int) -> bool:
    return bool(value >> n & 1)


def bits(*flags: bool) -> int:
    """Pack booleans into an int, the first argument being bit 0."""
    return sum(1 << n for n, on in enumerate(flags) if on)


def bit_names(value: int, table: Mapping[str, int]) -> tuple[str, ...]:
    """Names of the set bits of ``value`` per ``table`` (name -> bit), in bit order."""
    return tuple(name for name, n in sorted(table.items(), key=lambda kv: kv[1]) if bit(value, n))


def names_to_bits(names: Iterable[str], table: Mapping[str, int]) -> int:
    """Inverse of :func:`bit_names` (names not in ``table`` are a programming error: KeyError)."""
    return sum(1 << table[name] for name in names)


def trailing(cur: Cursor) -> tuple[str, ...]:
    """The measurement flag for octets beyond what the flags announced (policy: accept, expose)."""
    return (f"trailing-octets:{cur.remaining}",) if cur.remaining > 0 else ()


# -- encoders ----------------------------------------------------------------------------------
def u8(value: int) -> bytes:
    return value.to_bytes(1, "little")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "little")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def s16(value: int) -> bytes:
    return value.to_bytes(2, "little", signed=True)


def sfloat(value: Number) -> bytes:
    return encode_sfloat(value).to_bytes(2, "little")


def float32(value: Number) -> bytes:
    return encode_float(value).to_bytes(4, "little")


def date_time(value: DeviceTime) -> bytes:
    return encode_date_time(value)
