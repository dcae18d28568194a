"""Body Composition Service 0x181B: Body Composition Measurement 0x2A9C and Feature 0x2A9B.

Reference device-formats.md §2.3. 16-bit flags; Body Fat % (x0.1, mandatory, 0xFFFF = Measurement
Unsuccessful) then the flagged fields in flag order. Masses are x0.005 kg / x0.01 lb, height
x0.001 m / x0.1 in (imperial converted to kg / m, original kept), impedance x0.1 Ohm, basal
metabolism kJ.

Multiple-packet measurements (flag b12): BCS splits a value larger than the ATT MTU into
indications that each carry Flags + Body Fat % and the fields named by *their own* flags. Policy:
every fragment is a structurally complete value and parses on its own (the record keeps
``multiple_packet=True`` and the Measurement carries the flag ``multi-packet``);
:func:`merge` / :func:`decode_fragments` combine consecutive fragments into one record /
Measurement (a field present in two fragments must agree, otherwise DecodeError). The edge buffers
a ``multi-packet`` record until the next indication and decodes the pair with
:func:`decode_fragments`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor
from drivers._obs import observation, user
from drivers.driver import Driver, Parser
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Special
from drivers.weight import (
    HEIGHT_STEP,
    MASS_STEP,
    UNSUCCESSFUL,
    counts,
    length_unit,
    mass_unit,
    scaled,
)

log = logging.getLogger(__name__)

SERVICE = "0000181b-0000-1000-8000-00805f9b34fb"
MEASUREMENT_UUID = "00002a9c-0000-1000-8000-00805f9b34fb"
FEATURE_UUID = "00002a9b-0000-1000-8000-00805f9b34fb"

TENTH = Decimal("0.1")
#: Optional fields after the time stamp and user id, in wire order: (name, flag bit, kind).
_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("basal_metabolism", 3, "kj"),
    ("muscle_percentage", 4, "percent"),
    ("muscle_mass", 5, "mass"),
    ("fat_free_mass", 6, "mass"),
    ("soft_lean_mass", 7, "mass"),
    ("body_water_mass", 8, "mass"),
    ("impedance", 9, "ohm"),
    ("weight", 10, "mass"),
    ("height", 11, "height"),
)


def _step(kind: str, imperial: bool) -> Decimal:
    return {
        "kj": Decimal(1),
        "percent": TENTH,
        "ohm": TENTH,
        "mass": MASS_STEP[imperial],
        "height": HEIGHT_STEP[imperial],
    }[kind]


@dataclass(frozen=True, slots=True)
class BodyCompositionRecord:
    """Body Composition Measurement 0x2A9C (one packet), values in the device's units."""

    SOURCE: ClassVar[str] = "2a9c"

    imperial: bool
    body_fat: Decimal | Special  # %; Special.UNSUCCESSFUL for 0xFFFF
    time_stamp: DeviceTime | None = None
    user_id: int | None = None
    basal_metabolism: Decimal | None = None  # kJ
    muscle_percentage: Decimal | None = None  # %
    muscle_mass: Decimal | None = None  # kg / lb
    fat_free_mass: Decimal | None = None
    soft_lean_mass: Decimal | None = None
    body_water_mass: Decimal | None = None
    impedance: Decimal | None = None  # Ohm
    weight: Decimal | None = None  # kg / lb
    height: Decimal | None = None  # m / in
    multiple_packet: bool = False  # flag b12: one fragment of a split measurement

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u16("flags")
        imperial = c.bit(flags, 0)
        fat = cur.u16("body fat percentage")
        values: dict[str, object] = {
            "imperial": imperial,
            "body_fat": Special.UNSUCCESSFUL if fat == UNSUCCESSFUL else scaled(fat, TENTH),
            "time_stamp": cur.date_time() if c.bit(flags, 1) else None,
            "user_id": cur.u8("user id") if c.bit(flags, 2) else None,
            "multiple_packet": c.bit(flags, 12),
        }
        for name, flag, kind in _FIELDS:
            if c.bit(flags, flag):
                values[name] = scaled(cur.u16(name.replace("_", " ")), _step(kind, imperial))
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        present = [getattr(self, name) is not None for name, _, _ in _FIELDS]
        flags = c.bits(self.imperial, self.time_stamp is not None, self.user_id is not None)
        flags |= sum(1 << bit for (_, bit, _), on in zip(_FIELDS, present, strict=True) if on)
        flags |= self.multiple_packet << 12
        if isinstance(self.body_fat, Special):
            if self.body_fat is not Special.UNSUCCESSFUL:
                raise ValueError(f"body fat cannot be {self.body_fat}")
            fat = UNSUCCESSFUL
        else:
            fat = counts(self.body_fat, TENTH, "body fat", UNSUCCESSFUL - 1)
        out = c.u16(flags) + c.u16(fat)
        if self.time_stamp is not None:
            out += c.date_time(self.time_stamp)
        if self.user_id is not None:
            out += c.u8(self.user_id)
        for name, _, kind in _FIELDS:
            value = getattr(self, name)
            if value is not None:
                out += c.u16(counts(value, _step(kind, self.imperial), name))
        return out


_METRICS: dict[str, int] = {
    "basal_metabolism": codes.MDC_BASAL_METABOLISM,
    "muscle_percentage": codes.MDC_BODY_MUSCLE,
    "muscle_mass": codes.MDC_MASS_BODY_MUSCLE,
    "fat_free_mass": codes.MDC_MASS_BODY_FAT_FREE,
    "soft_lean_mass": codes.MDC_MASS_BODY_SOFT_LEAN,
    "body_water_mass": codes.MDC_BODY_WATER,
    "impedance": codes.MDC_BODY_ELECTRICAL_IMPEDANCE,
    "weight": codes.MDC_MASS_BODY_ACTUAL,
    "height": codes.MDC_LEN_BODY_ACTUAL,
}


def _unit(kind: str, imperial: bool) -> str:
    return {
        "kj": codes.UCUM_KJ,
        "percent": codes.UCUM_PERCENT,
        "ohm": codes.UCUM_OHM,
        "mass": mass_unit(imperial),
        "height": length_unit(imperial),
    }[kind]


def observations(rec: BodyCompositionRecord) -> tuple[Observation, ...]:
    """Body fat first, then every present field in wire order, in canonical units."""
    out = [observation(codes.MDC_BODY_FAT, rec.body_fat, codes.UCUM_PERCENT)]
    for name, _, kind in _FIELDS:
        value = getattr(rec, name)
        if value is not None:
            out.append(observation(_METRICS[name], value, _unit(kind, rec.imperial)))
    return tuple(out)


def _measurement(rec: BodyCompositionRecord, raw: bytes, flags: tuple[str, ...]) -> Measurement:
    return Measurement(
        source=rec.SOURCE,
        raw=raw,
        observations=observations(rec),
        kind=Kind.SPOT,
        timestamp=rec.time_stamp,
        user_id=user(rec.user_id),
        flags=(("multi-packet",) if rec.multiple_packet else ()) + flags,
    )


def decode_body_composition(data: bytes) -> Measurement:
    """One Body Composition Measurement indication (a whole value or one fragment)."""
    cur = Cursor(data, BodyCompositionRecord.SOURCE)
    rec = BodyCompositionRecord.read(cur)
    return _measurement(rec, bytes(data), c.trailing(cur))


def merge(fragments: Sequence[BodyCompositionRecord]) -> BodyCompositionRecord:
    """Combine the fragments of one multiple-packet measurement into one record.

    Units, body fat, and any field present in more than one fragment must agree (DecodeError).
    The result has ``multiple_packet=False``.
    """
    if not fragments:
        raise ValueError("merge() needs at least one fragment")
    first = fragments[0]
    values = {f.name: getattr(first, f.name) for f in dataclasses.fields(first)}
    for n, frag in enumerate(fragments[1:], start=1):
        for f in dataclasses.fields(frag):
            if f.name == "multiple_packet":
                continue
            new, old = getattr(frag, f.name), values[f.name]
            if new is None:
                continue
            if old is not None and new != old:
                raise DecodeError(
                    first.SOURCE, f.name, 0, f"fragment {n} disagrees: {new!r} != {old!r}"
                )
            values[f.name] = new
    values["multiple_packet"] = False
    return type(first)(**values)


def decode_fragments(fragments: Sequence[bytes]) -> Measurement:
    """Decode and merge the indications of one multiple-packet measurement (raw = concatenation;
    flags ``multi-packet:<n>`` and any trailing-octet flags of the fragments)."""
    recs: list[BodyCompositionRecord] = []
    flags: list[str] = [f"multi-packet:{len(fragments)}"]
    for data in fragments:
        cur = Cursor(data, BodyCompositionRecord.SOURCE)
        recs.append(BodyCompositionRecord.read(cur))
        flags.extend(c.trailing(cur))
    return _measurement(merge(recs), b"".join(fragments), tuple(flags))


_SUPPORT = (
    "time_stamp",
    "multiple_users",
    "basal_metabolism",
    "muscle_percentage",
    "muscle_mass",
    "fat_free_mass",
    "soft_lean_mass",
    "body_water_mass",
    "impedance",
    "weight",
    "height",
)


@dataclass(frozen=True, slots=True)
class BodyCompositionFeature:
    """Body Composition Feature 0x2A9B (32 bit): per-field support bits b0-10, mass resolution
    b11-14 and height resolution b15-17 (raw codes as in the Weight Scale Feature), b18-31 RFU."""

    SOURCE: ClassVar[str] = "2a9b"

    supported: tuple[str, ...] = ()  # names from _SUPPORT, in bit order
    mass_resolution: int = 0
    height_resolution: int = 0

    @classmethod
    def parse(cls, data: bytes) -> Self:
        v = Cursor(data, cls.SOURCE).u32("features")
        supported = tuple(name for bit, name in enumerate(_SUPPORT) if c.bit(v, bit))
        return cls(supported, v >> 11 & 0xF, v >> 15 & 0x7)

    def encode(self) -> bytes:
        v = c.names_to_bits(self.supported, {name: bit for bit, name in enumerate(_SUPPORT)})
        return c.u32(v | self.mass_resolution << 11 | self.height_resolution << 15)


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a9c",
        name="Body Composition Measurement",
        decode=decode_body_composition,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=MEASUREMENT_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (
    Parser("2a9b", "Body Composition Feature", BodyCompositionFeature.parse, FEATURE_UUID),
)
