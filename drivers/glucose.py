"""Glucose Service 0x1808: Glucose Measurement 0x2A18 and Glucose Measurement Context 0x2A34.

Reference device-formats.md §5.2, §7, §8.12-8.13; SIG GATT XML ``glucose_measurement`` and
``glucose_measurement_context``.

Measurement: the concentration is an SFLOAT in kg/L or mol/L and is converted by
:mod:`drivers.units` to mg/dL (x 100 000) or mmol/L (x 1 000), exactly, with the original kept.
Type-Sample Location is one octet, **low nibble = type**, high nibble = location; both nibbles
are kept as sent and named (reserved values are named ``"reserved"``). The metric's MDC code
follows the sample type (§7); undetermined whole blood and reserved types use the generic
MDC_CONC_GLU_GEN. LOINC: 2339-0 (mass) / 15074-8 (moles) for blood and plasma samples (types
1-8) as §7 gives for 0x2A18; none for interstitial fluid, control solution and reserved types
(not known to be blood). The observation's
flags name the sample: ``sample-type:<name>``, ``sample-location:<name>``.

A control-solution record (type 10 or location 4) is :attr:`Kind.CONTROL` and its metric is
MDC_CONC_GLU_CONTROL: it is never a patient observation. A record without concentration (flag b1
clear) has no observation but keeps its sensor-status flags. Nordic's synthetic vector (30 kg/L =
3 000 000 mg/dL) decodes as sent; plausibility is the alert layer's job (§8.13).

Measurement timestamp = Base Time with ``offset_minutes`` = Time Offset (user-facing time =
base + offset); the record keeps the offset separately (absent vs 0). Measurement flags: the
Sensor Status Annunciation names (:data:`SENSOR_STATUS`; b12-15 RFU ignored), ``context-follows``
when flag b4 announces a 0x2A34 record with the same sequence number, and ``trailing-octets:N``.

Context: :class:`GlucoseContext` decodes every field of the GATT XML. It is not a measurement:
it is registered as a :class:`Parser`, and :func:`apply_context` adds its meal/tester/health to
the matching measurement as flags. Carbohydrate, exercise, medication and HbA1c stay in the
record (the reference gives no verified codes for them).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

from drivers import _cursor as c
from drivers import codes, units
from drivers._cursor import Cursor, Number
from drivers.driver import Driver, Parser
from drivers.observation import DeviceTime, Kind, Measurement, Observation

log = logging.getLogger(__name__)

SERVICE = "00001808-0000-1000-8000-00805f9b34fb"
MEASUREMENT_UUID = "00002a18-0000-1000-8000-00805f9b34fb"
CONTEXT_UUID = "00002a34-0000-1000-8000-00805f9b34fb"

GlucoseUnit = Literal["kg/L", "mol/L"]
RESERVED = "reserved"

#: Sample type nibble -> (name, MDC metric). Other values: "reserved", MDC_CONC_GLU_GEN.
SAMPLE_TYPES: dict[int, tuple[str, int]] = {
    1: ("capillary-whole-blood", codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD),
    2: ("capillary-plasma", codes.MDC_CONC_GLU_CAPILLARY_PLASMA),
    3: ("venous-whole-blood", codes.MDC_CONC_GLU_VENOUS_WHOLEBLOOD),
    4: ("venous-plasma", codes.MDC_CONC_GLU_VENOUS_PLASMA),
    5: ("arterial-whole-blood", codes.MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD),
    6: ("arterial-plasma", codes.MDC_CONC_GLU_ARTERIAL_PLASMA),
    7: ("undetermined-whole-blood", codes.MDC_CONC_GLU_GEN),
    8: ("undetermined-plasma", codes.MDC_CONC_GLU_UNDETERMINED_PLASMA),
    9: ("interstitial-fluid", codes.MDC_CONC_GLU_ISF),
    10: ("control-solution", codes.MDC_CONC_GLU_CONTROL),
}
SAMPLE_LOCATIONS: dict[int, str] = {
    1: "finger",
    2: "alternate-site-test",
    3: "earlobe",
    4: "control-solution",
    15: "not-available",
}
TYPE_CONTROL = 10
BLOOD_TYPES = frozenset(range(1, 9))  # whole blood and plasma (capillary .. undetermined)
LOCATION_CONTROL = 4

#: Sensor Status Annunciation: flag name -> bit (= component of MDC_GLU_METER_DEV_STATUS).
SENSOR_STATUS: dict[str, int] = {
    "battery-low": 0,
    "sensor-malfunction": 1,
    "sample-size-insufficient": 2,
    "strip-insertion-error": 3,
    "strip-type-incorrect": 4,
    "result-too-high": 5,
    "result-too-low": 6,
    "temperature-too-high": 7,
    "temperature-too-low": 8,
    "read-interrupted": 9,
    "general-device-fault": 10,
    "time-fault": 11,
}

_LOINC = codes.LOINC_GLUCOSE_BY_UNIT


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    """Glucose Measurement 0x2A18, field by field.

    ``concentration``, ``sample_type`` and ``sample_location`` are present together (flag b1).
    ``unit`` is flag b2 as sent (it only matters when a concentration is present).
    """

    SOURCE: ClassVar[str] = "2a18"

    sequence_number: int
    base_time: DeviceTime
    time_offset: int | None = None  # minutes (sint16)
    concentration: Number | None = None
    unit: GlucoseUnit = "kg/L"
    sample_type: int | None = None  # low nibble
    sample_location: int | None = None  # high nibble
    status: tuple[str, ...] | None = None  # Sensor Status Annunciation names (SENSOR_STATUS)
    context_follows: bool = False

    def __post_init__(self) -> None:
        present = {self.concentration is None, self.sample_type is None}
        if len(present | {self.sample_location is None}) != 1:
            raise ValueError("concentration, sample_type and sample_location go together")

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        sequence = cur.u16("sequence number")
        base_time = cur.date_time("base time")
        time_offset = cur.s16("time offset") if c.bit(flags, 0) else None
        unit: GlucoseUnit = "mol/L" if c.bit(flags, 2) else "kg/L"
        concentration = sample_type = sample_location = None
        if c.bit(flags, 1):
            concentration = cur.sfloat("glucose concentration")
            nibbles = cur.u8("type-sample location")
            sample_type, sample_location = nibbles & 0x0F, nibbles >> 4
        status = (
            c.bit_names(cur.u16("sensor status annunciation"), SENSOR_STATUS)
            if c.bit(flags, 3)
            else None
        )
        return cls(
            sequence,
            base_time,
            time_offset,
            concentration,
            unit,
            sample_type,
            sample_location,
            status,
            c.bit(flags, 4),
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.time_offset is not None,
            self.concentration is not None,
            self.unit == "mol/L",
            self.status is not None,
            self.context_follows,
        )
        out = c.u8(flags) + c.u16(self.sequence_number) + c.date_time(self.base_time)
        if self.time_offset is not None:
            out += c.s16(self.time_offset)
        if self.concentration is not None:
            assert self.sample_type is not None and self.sample_location is not None
            out += c.sfloat(self.concentration)
            out += c.u8(self.sample_location << 4 | self.sample_type)
        if self.status is not None:
            out += c.u16(c.names_to_bits(self.status, SENSOR_STATUS))
        return out

    @property
    def type_name(self) -> str | None:
        if self.sample_type is None:
            return None
        return SAMPLE_TYPES.get(self.sample_type, (RESERVED, 0))[0]

    @property
    def location_name(self) -> str | None:
        if self.sample_location is None:
            return None
        return SAMPLE_LOCATIONS.get(self.sample_location, RESERVED)

    @property
    def is_control(self) -> bool:
        """Control-solution test (type 10 or location 4): never a patient observation."""
        return self.sample_type == TYPE_CONTROL or self.sample_location == LOCATION_CONTROL

    @property
    def user_facing_time(self) -> DeviceTime:
        """Base Time carrying the Time Offset (``DeviceTime.naive()`` applies it)."""
        return dataclasses.replace(self.base_time, offset_minutes=self.time_offset or 0)


def _observation(rec: GlucoseRecord) -> tuple[Observation, ...]:
    if rec.concentration is None or rec.sample_type is None:
        return ()
    metric = SAMPLE_TYPES.get(rec.sample_type, (RESERVED, codes.MDC_CONC_GLU_GEN))[1]
    if rec.is_control:
        metric = codes.MDC_CONC_GLU_CONTROL
    unit = codes.UCUM_MOL_L if rec.unit == "mol/L" else codes.UCUM_KG_L
    quantity, original = units.canonical(units.quantity(rec.concentration, unit))
    blood = not rec.is_control and rec.sample_type in BLOOD_TYPES
    loinc = _LOINC[quantity.unit] if blood else ()
    flags = (f"sample-type:{rec.type_name}", f"sample-location:{rec.location_name}")
    return (Observation(metric, quantity, loinc, original, None, flags),)


def decode_measurement(data: bytes) -> Measurement:
    """Glucose Measurement 0x2A18 -> one glucose observation (Kind.CONTROL for control solution)."""
    cur = Cursor(data, GlucoseRecord.SOURCE)
    rec = GlucoseRecord.read(cur)
    flags = (rec.status or ()) + (("context-follows",) if rec.context_follows else ())
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=_observation(rec),
        kind=Kind.CONTROL if rec.is_control else Kind.SPOT,
        timestamp=rec.user_facing_time,
        sequence=rec.sequence_number,
        flags=flags + c.trailing(cur),
    )


# -- Glucose Measurement Context 0x2A34 --------------------------------------------------------
CARBOHYDRATES: dict[int, str] = {
    1: "breakfast",
    2: "lunch",
    3: "dinner",
    4: "snack",
    5: "drink",
    6: "supper",
    7: "brunch",
}
MEALS: dict[int, str] = {
    1: "preprandial",
    2: "postprandial",
    3: "fasting",
    4: "casual",
    5: "bedtime",
}
TESTERS: dict[int, str] = {
    1: "self",
    2: "health-care-professional",
    3: "lab-test",
    15: "not-available",
}
HEALTH: dict[int, str] = {
    1: "minor-health-issues",
    2: "major-health-issues",
    3: "during-menses",
    4: "under-stress",
    5: "no-health-issues",
    15: "not-available",
}
MEDICATIONS: dict[int, str] = {
    1: "rapid-acting-insulin",
    2: "short-acting-insulin",
    3: "intermediate-acting-insulin",
    4: "long-acting-insulin",
    5: "pre-mixed-insulin",
}
MedicationUnit = Literal["kg", "L"]
EXERCISE_OVERRUN = 0xFFFF


def _name(table: dict[int, str], value: int | None) -> str | None:
    return None if value is None else table.get(value, RESERVED)


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """Glucose Measurement Context 0x2A34, field by field (pairs are present together)."""

    SOURCE: ClassVar[str] = "2a34"

    sequence_number: int
    extended_flags: int | None = None  # RFU octet (flag b7), kept raw
    carbohydrate_id: int | None = None
    carbohydrate: Number | None = None  # kg
    meal: int | None = None
    tester: int | None = None  # low nibble of Tester-Health
    health: int | None = None  # high nibble
    exercise_duration: int | None = None  # s, 65535 = overrun
    exercise_intensity: int | None = None  # %
    medication_id: int | None = None
    medication: Number | None = None  # in medication_unit
    medication_unit: MedicationUnit = "kg"  # flag b5 as sent
    hba1c: Number | None = None  # %

    def __post_init__(self) -> None:
        for a, b in (
            ("carbohydrate_id", "carbohydrate"),
            ("tester", "health"),
            ("exercise_duration", "exercise_intensity"),
            ("medication_id", "medication"),
        ):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"{a} and {b} go together")

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        sequence = cur.u16("sequence number")
        extended = cur.u8("extended flags") if c.bit(flags, 7) else None
        carb_id = carb = meal = tester = health = duration = intensity = None
        med_id = med = hba1c = None
        if c.bit(flags, 0):
            carb_id, carb = cur.u8("carbohydrate id"), cur.sfloat("carbohydrate")
        if c.bit(flags, 1):
            meal = cur.u8("meal")
        if c.bit(flags, 2):
            nibbles = cur.u8("tester-health")
            tester, health = nibbles & 0x0F, nibbles >> 4
        if c.bit(flags, 3):
            duration = cur.u16("exercise duration")
            intensity = cur.u8("exercise intensity")
        if c.bit(flags, 4):
            med_id, med = cur.u8("medication id"), cur.sfloat("medication")
        if c.bit(flags, 6):
            hba1c = cur.sfloat("hba1c")
        unit: MedicationUnit = "L" if c.bit(flags, 5) else "kg"
        return cls(
            sequence,
            extended,
            carb_id,
            carb,
            meal,
            tester,
            health,
            duration,
            intensity,
            med_id,
            med,
            unit,
            hba1c,
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.carbohydrate_id is not None,
            self.meal is not None,
            self.tester is not None,
            self.exercise_duration is not None,
            self.medication_id is not None,
            self.medication_unit == "L",
            self.hba1c is not None,
            self.extended_flags is not None,
        )
        out = c.u8(flags) + c.u16(self.sequence_number)
        if self.extended_flags is not None:
            out += c.u8(self.extended_flags)
        if self.carbohydrate_id is not None and self.carbohydrate is not None:
            out += c.u8(self.carbohydrate_id) + c.sfloat(self.carbohydrate)
        if self.meal is not None:
            out += c.u8(self.meal)
        if self.tester is not None and self.health is not None:
            out += c.u8(self.health << 4 | self.tester)
        if self.exercise_duration is not None and self.exercise_intensity is not None:
            out += c.u16(self.exercise_duration) + c.u8(self.exercise_intensity)
        if self.medication_id is not None and self.medication is not None:
            out += c.u8(self.medication_id) + c.sfloat(self.medication)
        if self.hba1c is not None:
            out += c.sfloat(self.hba1c)
        return out

    @property
    def carbohydrate_name(self) -> str | None:
        return _name(CARBOHYDRATES, self.carbohydrate_id)

    @property
    def meal_name(self) -> str | None:
        return _name(MEALS, self.meal)

    @property
    def tester_name(self) -> str | None:
        return _name(TESTERS, self.tester)

    @property
    def health_name(self) -> str | None:
        return _name(HEALTH, self.health)

    @property
    def medication_name(self) -> str | None:
        return _name(MEDICATIONS, self.medication_id)

    @property
    def flags(self) -> tuple[str, ...]:
        """``meal:<name>``, ``tester:<name>``, ``health:<name>`` for the fields present."""
        named = (
            ("meal", self.meal_name),
            ("tester", self.tester_name),
            ("health", self.health_name),
        )
        return tuple(f"{key}:{value}" for key, value in named if value is not None)


def apply_context(measurement: Measurement, context: GlucoseContext) -> Measurement:
    """``measurement`` with the context's meal/tester/health flags added.

    Raises ValueError unless the measurement is a 0x2A18 one with the context's sequence number
    (GLS pairs them by sequence number; a mismatch is a bug in the caller, not bad bytes).
    """
    if (
        measurement.source != GlucoseRecord.SOURCE
        or measurement.sequence != context.sequence_number
    ):
        raise ValueError(
            f"context {context.sequence_number} does not belong to "
            f"{measurement.source} record {measurement.sequence}"
        )
    return dataclasses.replace(measurement, flags=measurement.flags + context.flags)


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a18",
        name="Glucose Measurement",
        decode=decode_measurement,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=MEASUREMENT_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (
    Parser("2a34", "Glucose Measurement Context", GlucoseContext.parse, CONTEXT_UUID),
)

__all__ = [
    "DRIVERS",
    "PARSERS",
    "SENSOR_STATUS",
    "GlucoseContext",
    "GlucoseRecord",
    "apply_context",
    "decode_measurement",
]
