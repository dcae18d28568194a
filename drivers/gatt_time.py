"""GATT time formats: Date Time (0x2A08), Day Date Time, Exact Time 256, Current Time (0x2A2B).

Date Time is the device's local wall-clock time with no zone. Year/month/day 0 mean "not known":
the raw fields are kept in :class:`DeviceTime` and nothing is guessed. Structurally invalid fields
(month 13, hour 24, ...) are rejected with :class:`DecodeError`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime

from drivers.errors import DecodeError
from drivers.observation import DeviceTime

DATE_TIME_LEN = 7
CURRENT_TIME_LEN = 10

ADJUST_REASONS = (
    (0x01, "manual-time-update"),
    (0x02, "external-reference-time-update"),
    (0x04, "change-of-time-zone"),
    (0x08, "change-of-dst"),
)


def need(data: bytes, offset: int, size: int, source: str, field: str) -> None:
    """Raise DecodeError unless ``data`` has ``size`` octets at ``offset`` for ``field``."""
    if len(data) < offset + size:
        left = max(len(data) - offset, 0)
        raise DecodeError(source, field, offset, f"truncated: needs {size} octet(s), {left} left")


def decode_date_time(
    data: bytes, offset: int, source: str, field: str = "time stamp"
) -> DeviceTime:
    need(data, offset, DATE_TIME_LEN, source, field)
    year = int.from_bytes(data[offset : offset + 2], "little")
    month, day, hours, minutes, seconds = data[offset + 2 : offset + 7]
    if year != 0 and not 1582 <= year <= 9999:
        raise DecodeError(
            source, f"{field}.year", offset, f"{year} outside 1582..9999 (0 = unknown)"
        )
    if month > 12:
        raise DecodeError(
            source, f"{field}.month", offset + 2, f"{month} outside 1..12 (0 = unknown)"
        )
    max_day = calendar.monthrange(year, month)[1] if year and month else 31
    if day > max_day:
        raise DecodeError(
            source, f"{field}.day", offset + 3, f"{day} outside 1..{max_day} (0 = unknown)"
        )
    if hours > 23:
        raise DecodeError(source, f"{field}.hours", offset + 4, f"{hours} outside 0..23")
    if minutes > 59:
        raise DecodeError(source, f"{field}.minutes", offset + 5, f"{minutes} outside 0..59")
    if seconds > 59:
        raise DecodeError(source, f"{field}.seconds", offset + 6, f"{seconds} outside 0..59")
    return DeviceTime(year, month, day, hours, minutes, seconds)


def encode_date_time(t: DeviceTime) -> bytes:
    return t.year.to_bytes(2, "little") + bytes((t.month, t.day, t.hours, t.minutes, t.seconds))


def device_time_from(dt: datetime) -> DeviceTime:
    return DeviceTime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time characteristic: Exact Time 256 + Adjust Reason."""

    time: DeviceTime
    day_of_week: int  # 1 = Monday .. 7 = Sunday, 0 = unknown
    fractions256: int
    adjust_reasons: tuple[str, ...]
    raw: bytes


def decode_current_time(data: bytes) -> CurrentTime:
    source = "2a2b"
    t = decode_date_time(data, 0, source, "exact time")
    need(data, 7, 3, source, "day of week/fractions/adjust reason")
    dow, frac, reason = data[7], data[8], data[9]
    if dow > 7:
        raise DecodeError(source, "day of week", 7, f"{dow} outside 1..7 (0 = unknown)")
    reasons = tuple(name for bit, name in ADJUST_REASONS if reason & bit)
    return CurrentTime(t, dow, frac, reasons, bytes(data[:CURRENT_TIME_LEN]))


def encode_current_time(dt: datetime, *, fractions256: int = 0, adjust_reason: int = 0x01) -> bytes:
    """The 10 octets that set a device's clock to the local wall-clock time ``dt``."""
    return encode_date_time(device_time_from(dt)) + bytes(
        (dt.isoweekday(), fractions256 & 0xFF, adjust_reason & 0x0F)
    )
