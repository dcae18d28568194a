"""What a decoder returns: typed, frozen, exact.

No bare floats: every value is a :class:`decimal.Decimal` that keeps the precision the device's
exponent encoded (SFLOAT 0xF014 is ``Decimal("2.0")``), with its UCUM unit and MDC unit code.
Special values (NaN, NRes, ±INF, reserved, "measurement unsuccessful") have no value and say which
they are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


class Special(enum.StrEnum):
    """A value the device sent that is not a number."""

    NAN = "nan"
    NRES = "nres"
    POS_INF = "+inf"
    NEG_INF = "-inf"
    RESERVED = "reserved"
    UNSUCCESSFUL = "unsuccessful"  # WSS/BCS 0xFFFF "Measurement Unsuccessful"
    MISSING = "missing"  # vendor "no data" markers (Nonin SpO2 127, Contec PR 255, ...)


class Kind(enum.StrEnum):
    """What sort of record a measurement is; the edge forwards only clinical ones."""

    SPOT = "spot"  # a finished measurement (scale, cuff, thermometer, glucose, PLX spot-check)
    CONTINUOUS = "continuous"  # a streamed sample (PLX continuous, vendor oximetry)
    INTERMEDIATE = "intermediate"  # not a clinical reading (cuff pressure while inflating, ...)
    CONTROL = "control"  # control-solution test: never a patient observation
    DEVICE = "device"  # device state (battery level)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A value with its unit. ``value`` is None exactly when ``special`` is set."""

    value: Decimal | None
    unit: str  # UCUM
    mdc_unit: int  # MDC_DIM_* code
    special: Special | None = None


@dataclass(frozen=True, slots=True)
class DeviceTime:
    """A GATT Date Time as the device sent it: local wall-clock, no zone.

    Fields that the device marks unknown are 0 (year, month, day). Nothing is guessed:
    :meth:`naive` returns None when any date field is unknown.
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int
    offset_minutes: int = 0  # Glucose "Time Offset": user-facing time = base + offset

    @property
    def known(self) -> bool:
        return self.year != 0 and self.month != 0 and self.day != 0

    def naive(self) -> datetime | None:
        """The device's local wall-clock time (offset applied), or None if the date is unknown."""
        if not self.known:
            return None
        from datetime import timedelta

        base = datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)
        return base + timedelta(minutes=self.offset_minutes)


@dataclass(frozen=True, slots=True)
class Observation:
    """One metric of a measurement (one FHIR Observation / one stored reading)."""

    mdc: int  # MDC code of the metric, e.g. 150021 systolic
    quantity: Quantity
    loinc: tuple[str, ...] = ()
    original: Quantity | None = None  # value and unit as the device sent them, if converted
    panel: int | None = None  # compound code the metric belongs to, e.g. 150020 BP
    flags: tuple[str, ...] = ()  # metric-level status


@dataclass(frozen=True, slots=True)
class Measurement:
    """One decoded record (one indication/notification/frame)."""

    source: str  # registry key of the decoder: "2a35", "nonin-df2", ...
    raw: bytes
    observations: tuple[Observation, ...]
    kind: Kind = Kind.SPOT
    timestamp: DeviceTime | None = None
    clock_set: bool | None = None  # False: the device says its clock is not set (PLX b4)
    user_id: int | None = None  # device user index (0xFF = unknown user -> None)
    sequence: int | None = None  # device sequence number (glucose)
    flags: tuple[str, ...] = ()  # measurement-level status flag names
