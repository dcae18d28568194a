"""Battery Service 0x180F: Battery Level 0x2A19.

Reference device-formats.md §5.5 and §8.3. One uint8, 0..100 %. 101..255 are structurally invalid
and rejected (DecodeError), as Nordic's library does. Octets after the first are accepted and
flagged ``trailing-octets:N`` (project policy §8.5; Nordic rejects a 2-octet value). The result
is :attr:`Kind.DEVICE` (device state, not a clinical reading) with one MDC_ATTR_VAL_BATT_CHARGE
observation in ``%``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor
from drivers._obs import observation
from drivers.driver import Driver
from drivers.observation import Kind, Measurement

log = logging.getLogger(__name__)

SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
MAX_LEVEL = 100


@dataclass(frozen=True, slots=True)
class BatteryLevelRecord:
    """Battery Level 0x2A19."""

    SOURCE: ClassVar[str] = "2a19"

    level: int  # %

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        level = cur.u8("battery level")
        if level > MAX_LEVEL:
            raise cur.error("battery level", f"{level} outside 0..100 %", cur.offset - 1)
        return cls(level)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        return c.u8(self.level)


def decode_level(data: bytes) -> Measurement:
    """Battery Level 0x2A19 -> battery charge observation (Kind.DEVICE)."""
    cur = Cursor(data, BatteryLevelRecord.SOURCE)
    rec = BatteryLevelRecord.read(cur)
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=(
            observation(codes.MDC_ATTR_VAL_BATT_CHARGE, Decimal(rec.level), codes.UCUM_PERCENT),
        ),
        kind=Kind.DEVICE,
        flags=c.trailing(cur),
    )


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a19",
        name="Battery Level",
        decode=decode_level,
        transport="ble",
        kind=Kind.DEVICE,
        characteristic=LEVEL_UUID,
        service=SERVICE,
    ),
)

__all__ = ["DRIVERS", "BatteryLevelRecord", "decode_level"]
