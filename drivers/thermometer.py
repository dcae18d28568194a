"""Health Thermometer Service 0x1809: Temperature Measurement 0x2A1C, Intermediate Temperature
0x2A1E, Temperature Type 0x2A1D.

Reference device-formats.md §5.1. The temperature is a 32-bit FLOAT in °C or °F (flag b0); °F is
converted to Cel with the original kept. The optional Temperature Type (1..9) selects the MDC site
code (armpit -> MDC_TEMP_AXILLA, ...); type 2 "body (general)" and an absent type give
MDC_TEMP_BODY. Reserved type values (0, 10..255) are decoded, not rejected: the metric is then
MDC_TEMP_BODY and the Measurement carries the flag ``temperature-type:reserved``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor, Number
from drivers._obs import observation
from drivers.driver import Driver, Parser
from drivers.observation import DeviceTime, Kind, Measurement

log = logging.getLogger(__name__)

SERVICE = "00001809-0000-1000-8000-00805f9b34fb"
MEASUREMENT_UUID = "00002a1c-0000-1000-8000-00805f9b34fb"
TYPE_UUID = "00002a1d-0000-1000-8000-00805f9b34fb"
INTERMEDIATE_UUID = "00002a1e-0000-1000-8000-00805f9b34fb"

RESERVED = "reserved"


def type_name(value: int) -> str:
    """The Temperature Type's name ("armpit", ..., "tympanum"), or "reserved"."""
    entry = codes.TEMPERATURE_TYPES.get(value)
    return entry[0] if entry is not None else RESERVED


def site_metric(value: int | None) -> int:
    """The MDC metric for a Temperature Type (MDC_TEMP_BODY when absent or reserved)."""
    entry = codes.TEMPERATURE_TYPES.get(value) if value is not None else None
    return entry[1] if entry is not None else codes.MDC_TEMP_BODY


@dataclass(frozen=True, slots=True)
class TemperatureRecord:
    """Temperature Measurement 0x2A1C, field by field (``temperature_type`` is the raw value)."""

    SOURCE: ClassVar[str] = "2a1c"

    fahrenheit: bool
    temperature: Number
    time_stamp: DeviceTime | None = None
    temperature_type: int | None = None

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        temperature = cur.float32("temperature")
        time_stamp = cur.date_time() if c.bit(flags, 1) else None
        temperature_type = cur.u8("temperature type") if c.bit(flags, 2) else None
        return cls(c.bit(flags, 0), temperature, time_stamp, temperature_type)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.fahrenheit, self.time_stamp is not None, self.temperature_type is not None
        )
        out = c.u8(flags) + c.float32(self.temperature)
        if self.time_stamp is not None:
            out += c.date_time(self.time_stamp)
        if self.temperature_type is not None:
            out += c.u8(self.temperature_type)
        return out


@dataclass(frozen=True, slots=True)
class IntermediateTemperatureRecord(TemperatureRecord):
    """Intermediate Temperature 0x2A1E: the 0x2A1C layout, not a final reading."""

    SOURCE: ClassVar[str] = "2a1e"


@dataclass(frozen=True, slots=True)
class TemperatureType:
    """Temperature Type 0x2A1D (static site of a thermometer): the raw value and its name."""

    SOURCE: ClassVar[str] = "2a1d"

    value: int

    @property
    def name(self) -> str:
        return type_name(self.value)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls(Cursor(data, cls.SOURCE).u8("temperature type"))

    def encode(self) -> bytes:
        return c.u8(self.value)


def _decode(rec: TemperatureRecord, cur: Cursor, data: bytes, kind: Kind) -> Measurement:
    flags: tuple[str, ...] = ()
    if rec.temperature_type is not None and type_name(rec.temperature_type) == RESERVED:
        flags = ("temperature-type:reserved",)
    unit = codes.UCUM_DEGF if rec.fahrenheit else codes.UCUM_CEL
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=(observation(site_metric(rec.temperature_type), rec.temperature, unit),),
        kind=kind,
        timestamp=rec.time_stamp,
        flags=flags + c.trailing(cur),
    )


def decode_temperature(data: bytes) -> Measurement:
    """Temperature Measurement 0x2A1C -> body temperature (site-specific MDC code), in Cel."""
    cur = Cursor(data, TemperatureRecord.SOURCE)
    return _decode(TemperatureRecord.read(cur), cur, data, Kind.SPOT)


def decode_intermediate(data: bytes) -> Measurement:
    """Intermediate Temperature 0x2A1E -> as 0x2A1C, but Kind.INTERMEDIATE."""
    cur = Cursor(data, IntermediateTemperatureRecord.SOURCE)
    return _decode(IntermediateTemperatureRecord.read(cur), cur, data, Kind.INTERMEDIATE)


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a1c",
        name="Temperature Measurement",
        decode=decode_temperature,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=MEASUREMENT_UUID,
        service=SERVICE,
    ),
    Driver(
        key="2a1e",
        name="Intermediate Temperature",
        decode=decode_intermediate,
        transport="ble",
        kind=Kind.INTERMEDIATE,
        characteristic=INTERMEDIATE_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (
    Parser("2a1d", "Temperature Type", TemperatureType.parse, TYPE_UUID),
)
