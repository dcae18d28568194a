"""Blood Pressure Service 0x1810: Measurement 0x2A35, Intermediate Cuff Pressure 0x2A36,
Feature 0x2A49.

Reference device-formats.md §3. Pressures are SFLOAT in mmHg or kPa (flag b0); kPa is converted to
mm[Hg] with the original kept. Any value may be a special value (A&D stores error records with every
value NaN): they decode as special quantities, never as numbers. Pulse-rate range 3 (RFU) decodes as
"reserved". ICP carries the cuff pressure in the systolic slot; its diastolic/MAP slots are unused
(NaN per BLS, 0 in Nordic's vectors) and ignored (reference §8.7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor, Number
from drivers._obs import observation, user
from drivers.driver import Driver, Parser
from drivers.observation import DeviceTime, Kind, Measurement, Observation

log = logging.getLogger(__name__)

SERVICE = "00001810-0000-1000-8000-00805f9b34fb"
BPM_UUID = "00002a35-0000-1000-8000-00805f9b34fb"
ICP_UUID = "00002a36-0000-1000-8000-00805f9b34fb"
FEATURE_UUID = "00002a49-0000-1000-8000-00805f9b34fb"

PressureUnit = Literal["mm[Hg]", "kPa"]
PulseRateRange = Literal["within-range", "exceeds-upper-limit", "below-lower-limit", "reserved"]
_RANGES: tuple[PulseRateRange, ...] = (
    "within-range",
    "exceeds-upper-limit",
    "below-lower-limit",
    "reserved",
)
_RANGE_FLAGS = {1: "pulse-over-range", 2: "pulse-under-range", 3: "pulse-rate-range-reserved"}


@dataclass(frozen=True, slots=True)
class BloodPressureStatus:
    """Measurement Status (16 bit); b6-15 RFU are ignored."""

    body_movement: bool = False
    cuff_too_loose: bool = False
    irregular_pulse: bool = False
    pulse_rate_range: PulseRateRange = "within-range"
    improper_position: bool = False

    @classmethod
    def from_int(cls, value: int) -> Self:
        return cls(
            body_movement=c.bit(value, 0),
            cuff_too_loose=c.bit(value, 1),
            irregular_pulse=c.bit(value, 2),
            pulse_rate_range=_RANGES[value >> 3 & 0b11],
            improper_position=c.bit(value, 5),
        )

    def to_int(self) -> int:
        rng = _RANGES.index(self.pulse_rate_range)
        return (
            c.bits(self.body_movement, self.cuff_too_loose, self.irregular_pulse)
            | rng << 3
            | (self.improper_position << 5)
        )

    @property
    def flags(self) -> tuple[str, ...]:
        """Flag names (those of codes.BP_STATUS_COMPONENTS, plus "pulse-rate-range-reserved")."""
        names = [
            name
            for on, name in (
                (self.body_movement, "body-movement"),
                (self.cuff_too_loose, "cuff-too-loose"),
                (self.irregular_pulse, "irregular-pulse"),
            )
            if on
        ]
        rng = _RANGES.index(self.pulse_rate_range)
        if rng:
            names.append(_RANGE_FLAGS[rng])
        if self.improper_position:
            names.append("improper-position")
        return tuple(names)


@dataclass(frozen=True, slots=True)
class BloodPressureRecord:
    """Blood Pressure Measurement 0x2A35, field by field."""

    SOURCE: ClassVar[str] = "2a35"

    unit: PressureUnit
    systolic: Number
    diastolic: Number
    mean_arterial_pressure: Number
    time_stamp: DeviceTime | None = None
    pulse_rate: Number | None = None
    user_id: int | None = None
    status: BloodPressureStatus | None = None

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        unit: PressureUnit = "kPa" if c.bit(flags, 0) else "mm[Hg]"
        systolic = cur.sfloat("systolic")
        diastolic = cur.sfloat("diastolic")
        mean = cur.sfloat("mean arterial pressure")
        time_stamp = cur.date_time() if c.bit(flags, 1) else None
        pulse_rate = cur.sfloat("pulse rate") if c.bit(flags, 2) else None
        user_id = cur.u8("user id") if c.bit(flags, 3) else None
        status = (
            BloodPressureStatus.from_int(cur.u16("measurement status")) if c.bit(flags, 4) else None
        )
        return cls(unit, systolic, diastolic, mean, time_stamp, pulse_rate, user_id, status)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.unit == "kPa",
            self.time_stamp is not None,
            self.pulse_rate is not None,
            self.user_id is not None,
            self.status is not None,
        )
        out = c.u8(flags) + c.sfloat(self.systolic) + c.sfloat(self.diastolic)
        out += c.sfloat(self.mean_arterial_pressure)
        if self.time_stamp is not None:
            out += c.date_time(self.time_stamp)
        if self.pulse_rate is not None:
            out += c.sfloat(self.pulse_rate)
        if self.user_id is not None:
            out += c.u8(self.user_id)
        if self.status is not None:
            out += c.u16(self.status.to_int())
        return out


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressureRecord(BloodPressureRecord):
    """Intermediate Cuff Pressure 0x2A36: the BPM layout; systolic = current cuff pressure."""

    SOURCE: ClassVar[str] = "2a36"


@dataclass(frozen=True, slots=True)
class BloodPressureFeature:
    """Blood Pressure Feature 0x2A49 (16 bit; b6-15 RFU ignored)."""

    SOURCE: ClassVar[str] = "2a49"

    body_movement_detection: bool = False
    cuff_fit_detection: bool = False
    irregular_pulse_detection: bool = False
    pulse_rate_range_detection: bool = False
    measurement_position_detection: bool = False
    multiple_bonds: bool = False

    @classmethod
    def parse(cls, data: bytes) -> Self:
        value = Cursor(data, cls.SOURCE).u16("features")
        return cls(*(c.bit(value, n) for n in range(6)))

    def encode(self) -> bytes:
        return c.u16(
            c.bits(
                self.body_movement_detection,
                self.cuff_fit_detection,
                self.irregular_pulse_detection,
                self.pulse_rate_range_detection,
                self.measurement_position_detection,
                self.multiple_bonds,
            )
        )


def _pulse(rec: BloodPressureRecord) -> tuple[Observation, ...]:
    if rec.pulse_rate is None:
        return ()
    return (observation(codes.MDC_PULS_RATE_NON_INV, rec.pulse_rate, codes.UCUM_PER_MIN),)


def decode_bpm(data: bytes) -> Measurement:
    """Blood Pressure Measurement 0x2A35 -> systolic, diastolic, mean (panel 150020), pulse rate."""
    cur = Cursor(data, BloodPressureRecord.SOURCE)
    rec = BloodPressureRecord.read(cur)
    panel = codes.MDC_PRESS_BLD_NONINV
    observations = (
        observation(codes.MDC_PRESS_BLD_NONINV_SYS, rec.systolic, rec.unit, panel=panel),
        observation(codes.MDC_PRESS_BLD_NONINV_DIA, rec.diastolic, rec.unit, panel=panel),
        observation(
            codes.MDC_PRESS_BLD_NONINV_MEAN, rec.mean_arterial_pressure, rec.unit, panel=panel
        ),
        *_pulse(rec),
    )
    status = rec.status.flags if rec.status is not None else ()
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=observations,
        kind=Kind.SPOT,
        timestamp=rec.time_stamp,
        user_id=user(rec.user_id),
        flags=status + c.trailing(cur),
    )


def decode_icp(data: bytes) -> Measurement:
    """Intermediate Cuff Pressure 0x2A36 -> cuff pressure (+ pulse rate); not a clinical reading."""
    cur = Cursor(data, IntermediateCuffPressureRecord.SOURCE)
    rec = IntermediateCuffPressureRecord.read(cur)
    status = rec.status.flags if rec.status is not None else ()
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=(observation(codes.MDC_PRESS_CUFF, rec.systolic, rec.unit), *_pulse(rec)),
        kind=Kind.INTERMEDIATE,
        timestamp=rec.time_stamp,
        user_id=user(rec.user_id),
        flags=status + c.trailing(cur),
    )


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a35",
        name="Blood Pressure Measurement",
        decode=decode_bpm,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=BPM_UUID,
        service=SERVICE,
    ),
    Driver(
        key="2a36",
        name="Intermediate Cuff Pressure",
        decode=decode_icp,
        transport="ble",
        kind=Kind.INTERMEDIATE,
        characteristic=ICP_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (
    Parser("2a49", "Blood Pressure Feature", BloodPressureFeature.parse, FEATURE_UUID),
)

__all__ = [
    "DRIVERS",
    "PARSERS",
    "BloodPressureFeature",
    "BloodPressureRecord",
    "BloodPressureStatus",
    "IntermediateCuffPressureRecord",
    "decode_bpm",
    "decode_icp",
]
