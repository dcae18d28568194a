"""Weight Scale Service 0x181D: Weight Measurement 0x2A9D and Weight Scale Feature 0x2A9E.

Reference device-formats.md §2.1-2.2. Weight is uint16 x 0.005 kg (SI) or x 0.01 lb (imperial);
height x 0.001 m or x 0.1 in; BMI x 0.1 kg/m² in both. Imperial values are converted to kg / m with
the original kept. Weight 0xFFFF is "Measurement Unsuccessful" (WSS text, reference §8.6) and
decodes as :attr:`Special.UNSUCCESSFUL`, never as 327.675 kg.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor
from drivers._obs import observation, user
from drivers.driver import Driver, Parser
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Special

log = logging.getLogger(__name__)

SERVICE = "0000181d-0000-1000-8000-00805f9b34fb"
MEASUREMENT_UUID = "00002a9d-0000-1000-8000-00805f9b34fb"
FEATURE_UUID = "00002a9e-0000-1000-8000-00805f9b34fb"

UNSUCCESSFUL = 0xFFFF
#: Resolution of one count: (SI, imperial).
MASS_STEP = (Decimal("0.005"), Decimal("0.01"))
HEIGHT_STEP = (Decimal("0.001"), Decimal("0.1"))
BMI_STEP = Decimal("0.1")


def scaled(raw: int, step: Decimal) -> Decimal:
    """``raw x step`` exactly, with the step's number of decimals (14000 x 0.005 -> 70.000)."""
    _, digits, exponent = step.as_tuple()
    assert isinstance(exponent, int)
    return Decimal(raw * int("".join(map(str, digits)))).scaleb(exponent)


def counts(value: Decimal, step: Decimal, field: str, limit: int = 0xFFFF) -> int:
    """Inverse of :func:`scaled`: raise ValueError unless ``value`` is a whole number of steps."""
    n = value / step
    if n != n.to_integral_value() or not 0 <= n <= limit:
        raise ValueError(f"{field} {value} is not a uint16 multiple of {step}")
    return int(n)


def mass(raw: int, imperial: bool) -> Decimal | Special:
    """A WSS/BCS mass field: 0xFFFF is "Measurement Unsuccessful"."""
    return Special.UNSUCCESSFUL if raw == UNSUCCESSFUL else scaled(raw, MASS_STEP[imperial])


def mass_counts(value: Decimal | Special, imperial: bool, field: str) -> int:
    if value is Special.UNSUCCESSFUL:
        return UNSUCCESSFUL
    if isinstance(value, Special):
        raise ValueError(f"{field} cannot be {value}")
    return counts(value, MASS_STEP[imperial], field, UNSUCCESSFUL - 1)


def mass_unit(imperial: bool) -> str:
    return codes.UCUM_LB if imperial else codes.UCUM_KG


def length_unit(imperial: bool) -> str:
    return codes.UCUM_IN if imperial else codes.UCUM_M


@dataclass(frozen=True, slots=True)
class WeightRecord:
    """Weight Measurement 0x2A9D, field by field (values in the device's unit)."""

    SOURCE: ClassVar[str] = "2a9d"

    imperial: bool
    weight: Decimal | Special  # kg or lb; Special.UNSUCCESSFUL for 0xFFFF
    time_stamp: DeviceTime | None = None
    user_id: int | None = None
    bmi: Decimal | None = None  # kg/m², present together with height (flag b3)
    height: Decimal | None = None  # m or in

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        imperial = c.bit(flags, 0)
        weight = mass(cur.u16("weight"), imperial)
        time_stamp = cur.date_time() if c.bit(flags, 1) else None
        user_id = cur.u8("user id") if c.bit(flags, 2) else None
        bmi = height = None
        if c.bit(flags, 3):
            bmi = scaled(cur.u16("bmi"), BMI_STEP)
            height = scaled(cur.u16("height"), HEIGHT_STEP[imperial])
        return cls(imperial, weight, time_stamp, user_id, bmi, height)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        if (self.bmi is None) != (self.height is None):
            raise ValueError("bmi and height come together (flag b3)")
        flags = c.bits(
            self.imperial,
            self.time_stamp is not None,
            self.user_id is not None,
            self.bmi is not None,
        )
        out = c.u8(flags) + c.u16(mass_counts(self.weight, self.imperial, "weight"))
        if self.time_stamp is not None:
            out += c.date_time(self.time_stamp)
        if self.user_id is not None:
            out += c.u8(self.user_id)
        if self.bmi is not None and self.height is not None:
            out += c.u16(counts(self.bmi, BMI_STEP, "bmi"))
            out += c.u16(counts(self.height, HEIGHT_STEP[self.imperial], "height"))
        return out


_WEIGHT_RESOLUTION: dict[int, tuple[Decimal, Decimal]] = {
    n: (Decimal(si), Decimal(imp))
    for n, (si, imp) in enumerate(
        (
            ("0.5", "1"),
            ("0.2", "0.5"),
            ("0.1", "0.2"),
            ("0.05", "0.1"),
            ("0.02", "0.05"),
            ("0.01", "0.02"),
            ("0.005", "0.01"),
        ),
        start=1,
    )
}
_HEIGHT_RESOLUTION: dict[int, tuple[Decimal, Decimal]] = {
    1: (Decimal("0.01"), Decimal("1")),
    2: (Decimal("0.005"), Decimal("0.5")),
    3: (Decimal("0.001"), Decimal("0.1")),
}


@dataclass(frozen=True, slots=True)
class WeightFeature:
    """Weight Scale Feature 0x2A9E (32 bit; b10-31 RFU ignored).

    ``weight_resolution`` (b3-6) and ``height_resolution`` (b7-9) are the raw codes: 0 =
    unspecified, values beyond the table are reserved (kept, resolution None).
    """

    SOURCE: ClassVar[str] = "2a9e"

    time_stamp_supported: bool = False
    multiple_users_supported: bool = False
    bmi_supported: bool = False
    weight_resolution: int = 0
    height_resolution: int = 0

    @classmethod
    def parse(cls, data: bytes) -> Self:
        v = Cursor(data, cls.SOURCE).u32("features")
        return cls(c.bit(v, 0), c.bit(v, 1), c.bit(v, 2), v >> 3 & 0xF, v >> 7 & 0x7)

    def encode(self) -> bytes:
        head = c.bits(self.time_stamp_supported, self.multiple_users_supported, self.bmi_supported)
        return c.u32(head | self.weight_resolution << 3 | self.height_resolution << 7)

    def weight_step(self, imperial: bool = False) -> Decimal | None:
        """The scale's weight resolution in kg (or lb), None if unspecified or reserved."""
        pair = _WEIGHT_RESOLUTION.get(self.weight_resolution)
        return None if pair is None else pair[imperial]

    def height_step(self, imperial: bool = False) -> Decimal | None:
        """The height resolution in m (or in), None if unspecified or reserved."""
        pair = _HEIGHT_RESOLUTION.get(self.height_resolution)
        return None if pair is None else pair[imperial]


def decode_weight(data: bytes) -> Measurement:
    """Weight Measurement 0x2A9D -> body weight (+ BMI, height), in kg / kg/m2 / m."""
    cur = Cursor(data, WeightRecord.SOURCE)
    rec = WeightRecord.read(cur)
    obs: list[Observation] = [
        observation(codes.MDC_MASS_BODY_ACTUAL, rec.weight, mass_unit(rec.imperial))
    ]
    if rec.bmi is not None and rec.height is not None:
        obs.append(observation(codes.MDC_RATIO_MASS_BODY_LEN_SQ, rec.bmi, codes.UCUM_BMI))
        obs.append(observation(codes.MDC_LEN_BODY_ACTUAL, rec.height, length_unit(rec.imperial)))
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=tuple(obs),
        kind=Kind.SPOT,
        timestamp=rec.time_stamp,
        user_id=user(rec.user_id),
        flags=c.trailing(cur),
    )


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a9d",
        name="Weight Measurement",
        decode=decode_weight,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=MEASUREMENT_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (
    Parser("2a9e", "Weight Scale Feature", WeightFeature.parse, FEATURE_UUID),
)
