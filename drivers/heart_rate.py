"""Heart Rate Service 0x180D: Heart Rate Measurement 0x2A37.

Reference device-formats.md §5.4; SIG GATT XML ``heart_rate_measurement``. Flags: b0 value format
(uint8/uint16), b1-2 sensor contact (0/1 not supported, 2 not detected, 3 detected), b3 energy
expended (uint16 kJ), b4 RR intervals (uint16, 1/1024 s, filling the rest of the PDU).

The record keeps everything as sent: the value-format bit (a uint16 may carry a value < 256), the
2-bit sensor-contact field, and the RR intervals as raw 1/1024-s counts. :attr:`rr_seconds` gives
them as exact Decimal seconds (n/1024 has at most 10 decimals, so the division is exact).

Only the heart rate becomes an observation (MDC_ECG_HEART_RATE, ``/min``); energy expended and
RR intervals have no verified code in the reference and stay in the record. Measurement flags:
``sensor-contact:detected`` / ``sensor-contact:not-detected`` (nothing when unsupported) and
``trailing-octets:N`` for octets after the fields when b4 is clear. With b4 set the RR list must
be non-empty and whole (an odd octet left over is a DecodeError): the RR field *is* the rest of
the PDU, so there is nothing to call trailing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor
from drivers._obs import observation
from drivers.driver import Driver
from drivers.observation import Kind, Measurement

log = logging.getLogger(__name__)

SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"

SensorContact = Literal["not-supported", "not-detected", "detected"]
_CONTACT: tuple[SensorContact, ...] = ("not-supported", "not-supported", "not-detected", "detected")
RR_UNIT = Decimal(1024)


@dataclass(frozen=True, slots=True)
class HeartRateRecord:
    """Heart Rate Measurement 0x2A37, field by field."""

    SOURCE: ClassVar[str] = "2a37"

    heart_rate: int  # /min
    uint16: bool = False  # flag b0: the value was sent as uint16
    sensor_contact_bits: int = 0  # flag b2-1 as sent (0..3)
    energy_expended: int | None = None  # kJ (65535 = "max reached" per HRS)
    rr_intervals: tuple[int, ...] | None = None  # 1/1024 s

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        wide = c.bit(flags, 0)
        heart_rate = cur.u16("heart rate") if wide else cur.u8("heart rate")
        energy = cur.u16("energy expended") if c.bit(flags, 3) else None
        rr: tuple[int, ...] | None = None
        if c.bit(flags, 4):
            if cur.remaining == 0 or cur.remaining % 2:
                raise cur.error(
                    "rr intervals",
                    f"{cur.remaining} octet(s) left: needs a non-empty whole number of uint16",
                )
            rr = tuple(cur.u16("rr interval") for _ in range(cur.remaining // 2))
        return cls(heart_rate, wide, flags >> 1 & 0b11, energy, rr)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = (
            c.bits(self.uint16)
            | (self.sensor_contact_bits & 0b11) << 1
            | c.bits(
                False, False, False, self.energy_expended is not None, self.rr_intervals is not None
            )
        )
        out = c.u8(flags) + (c.u16(self.heart_rate) if self.uint16 else c.u8(self.heart_rate))
        if self.energy_expended is not None:
            out += c.u16(self.energy_expended)
        for rr in self.rr_intervals or ():
            out += c.u16(rr)
        return out

    @property
    def sensor_contact(self) -> SensorContact:
        return _CONTACT[self.sensor_contact_bits & 0b11]

    @property
    def rr_seconds(self) -> tuple[Decimal, ...] | None:
        """RR intervals in seconds, exact."""
        if self.rr_intervals is None:
            return None
        return tuple(Decimal(n) / RR_UNIT for n in self.rr_intervals)


def decode_measurement(data: bytes) -> Measurement:
    """Heart Rate Measurement 0x2A37 -> heart rate observation (Kind.CONTINUOUS)."""
    cur = Cursor(data, HeartRateRecord.SOURCE)
    rec = HeartRateRecord.read(cur)
    contact = rec.sensor_contact
    flags = () if contact == "not-supported" else (f"sensor-contact:{contact}",)
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=(
            observation(codes.MDC_ECG_HEART_RATE, Decimal(rec.heart_rate), codes.UCUM_PER_MIN),
        ),
        kind=Kind.CONTINUOUS,
        flags=flags + c.trailing(cur),
    )


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a37",
        name="Heart Rate Measurement",
        decode=decode_measurement,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=MEASUREMENT_UUID,
        service=SERVICE,
    ),
)

__all__ = ["DRIVERS", "HeartRateRecord", "decode_measurement"]
