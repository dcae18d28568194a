"""Pulse Oximeter Service 0x1822 (PLXS 1.0.1): Spot-check 0x2A5E, Continuous 0x2A5F,
Features 0x2A60.

Reference device-formats.md §4. SpO2, PR and PAI are SFLOAT (NaN when invalid). Status bit fields
are kept by name (:data:`codes.PLX_MEASUREMENT_STATUS`, :data:`codes.PLX_DEVICE_STATUS`; RFU bits
ignored) and become Measurement flags. Spot-check flag b4 "device clock is not set" keeps the
timestamp and sets ``clock_set=False``.

Continuous: the SpO2PR-Normal pair become the SpO2 / pulse-rate observations; the optional Fast and
Slow pairs become extra observations of the same metrics flagged ``modality:fast`` /
``modality:slow`` (MDC_MODALITY_FAST/SLOW), so that a consumer that wants one value per metric
filters on the absence of a ``modality:`` flag.
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
from drivers.observation import DeviceTime, Kind, Measurement, Observation

log = logging.getLogger(__name__)

SERVICE = "00001822-0000-1000-8000-00805f9b34fb"
SPOT_UUID = "00002a5e-0000-1000-8000-00805f9b34fb"
CONTINUOUS_UUID = "00002a5f-0000-1000-8000-00805f9b34fb"
FEATURES_UUID = "00002a60-0000-1000-8000-00805f9b34fb"

MEASUREMENT_STATUS = codes.PLX_MEASUREMENT_STATUS
DEVICE_STATUS = {name: gatt_bit for name, (gatt_bit, _) in codes.PLX_DEVICE_STATUS.items()}


def _measurement_status(cur: Cursor) -> tuple[str, ...]:
    return c.bit_names(cur.u16("measurement status"), MEASUREMENT_STATUS)


def _device_status(cur: Cursor) -> tuple[str, ...]:
    return c.bit_names(cur.u24("device and sensor status"), DEVICE_STATUS)


def _status_flags(
    measurement: tuple[str, ...] | None, device: tuple[str, ...] | None
) -> tuple[str, ...]:
    return (measurement or ()) + (device or ())


@dataclass(frozen=True, slots=True)
class SpO2PR:
    """One SpO2 (%) / pulse rate (bpm) pair."""

    spo2: Number
    pulse_rate: Number

    @classmethod
    def read(cls, cur: Cursor, name: str) -> Self:
        return cls(cur.sfloat(f"{name} spo2"), cur.sfloat(f"{name} pulse rate"))

    def encode(self) -> bytes:
        return c.sfloat(self.spo2) + c.sfloat(self.pulse_rate)

    def observations(self, flags: tuple[str, ...] = ()) -> tuple[Observation, ...]:
        return (
            observation(codes.MDC_PULS_OXIM_SAT_O2, self.spo2, codes.UCUM_PERCENT, flags=flags),
            observation(
                codes.MDC_PULS_OXIM_PULS_RATE, self.pulse_rate, codes.UCUM_PER_MIN, flags=flags
            ),
        )


def _pai(value: Number | None) -> tuple[Observation, ...]:
    if value is None:
        return ()
    return (observation(codes.MDC_PULS_OXIM_PERF_REL, value, codes.UCUM_PERCENT),)


@dataclass(frozen=True, slots=True)
class PlxSpotCheckRecord:
    """PLX Spot-check Measurement 0x2A5E, field by field (status fields as flag names)."""

    SOURCE: ClassVar[str] = "2a5e"

    spo2pr: SpO2PR
    time_stamp: DeviceTime | None = None
    measurement_status: tuple[str, ...] | None = None
    device_sensor_status: tuple[str, ...] | None = None
    pulse_amplitude_index: Number | None = None
    clock_not_set: bool = False  # flag b4

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        spo2pr = SpO2PR.read(cur, "spot-check")
        time_stamp = cur.date_time() if c.bit(flags, 0) else None
        mstatus = _measurement_status(cur) if c.bit(flags, 1) else None
        dstatus = _device_status(cur) if c.bit(flags, 2) else None
        pai = cur.sfloat("pulse amplitude index") if c.bit(flags, 3) else None
        return cls(spo2pr, time_stamp, mstatus, dstatus, pai, c.bit(flags, 4))

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.time_stamp is not None,
            self.measurement_status is not None,
            self.device_sensor_status is not None,
            self.pulse_amplitude_index is not None,
            self.clock_not_set,
        )
        out = c.u8(flags) + self.spo2pr.encode()
        if self.time_stamp is not None:
            out += c.date_time(self.time_stamp)
        if self.measurement_status is not None:
            out += c.u16(c.names_to_bits(self.measurement_status, MEASUREMENT_STATUS))
        if self.device_sensor_status is not None:
            out += c.u24(c.names_to_bits(self.device_sensor_status, DEVICE_STATUS))
        if self.pulse_amplitude_index is not None:
            out += c.sfloat(self.pulse_amplitude_index)
        return out


@dataclass(frozen=True, slots=True)
class PlxContinuousRecord:
    """PLX Continuous Measurement 0x2A5F, field by field."""

    SOURCE: ClassVar[str] = "2a5f"

    normal: SpO2PR
    fast: SpO2PR | None = None
    slow: SpO2PR | None = None
    measurement_status: tuple[str, ...] | None = None
    device_sensor_status: tuple[str, ...] | None = None
    pulse_amplitude_index: Number | None = None

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        flags = cur.u8("flags")
        normal = SpO2PR.read(cur, "normal")
        fast = SpO2PR.read(cur, "fast") if c.bit(flags, 0) else None
        slow = SpO2PR.read(cur, "slow") if c.bit(flags, 1) else None
        mstatus = _measurement_status(cur) if c.bit(flags, 2) else None
        dstatus = _device_status(cur) if c.bit(flags, 3) else None
        pai = cur.sfloat("pulse amplitude index") if c.bit(flags, 4) else None
        return cls(normal, fast, slow, mstatus, dstatus, pai)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))

    def encode(self) -> bytes:
        flags = c.bits(
            self.fast is not None,
            self.slow is not None,
            self.measurement_status is not None,
            self.device_sensor_status is not None,
            self.pulse_amplitude_index is not None,
        )
        out = c.u8(flags) + self.normal.encode()
        if self.fast is not None:
            out += self.fast.encode()
        if self.slow is not None:
            out += self.slow.encode()
        if self.measurement_status is not None:
            out += c.u16(c.names_to_bits(self.measurement_status, MEASUREMENT_STATUS))
        if self.device_sensor_status is not None:
            out += c.u24(c.names_to_bits(self.device_sensor_status, DEVICE_STATUS))
        if self.pulse_amplitude_index is not None:
            out += c.sfloat(self.pulse_amplitude_index)
        return out


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    """PLX Features 0x2A60: supported features (16 bit, b8-15 RFU ignored) and the optional
    support fields (present iff b0 / b1), as the names of the supported status flags."""

    SOURCE: ClassVar[str] = "2a60"

    spot_check_measurement_storage: bool = False
    spot_check_timestamp: bool = False
    spo2pr_fast: bool = False
    spo2pr_slow: bool = False
    pulse_amplitude_index: bool = False
    multiple_bonds: bool = False
    measurement_status_support: tuple[str, ...] | None = None
    device_sensor_status_support: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, data: bytes) -> Self:
        cur = Cursor(data, cls.SOURCE)
        v = cur.u16("supported features")
        mstatus = dstatus = None
        if c.bit(v, 0):
            mstatus = c.bit_names(cur.u16("measurement status support"), MEASUREMENT_STATUS)
        if c.bit(v, 1):
            dstatus = c.bit_names(cur.u24("device and sensor status support"), DEVICE_STATUS)
        return cls(
            spot_check_measurement_storage=c.bit(v, 2),
            spot_check_timestamp=c.bit(v, 3),
            spo2pr_fast=c.bit(v, 4),
            spo2pr_slow=c.bit(v, 5),
            pulse_amplitude_index=c.bit(v, 6),
            multiple_bonds=c.bit(v, 7),
            measurement_status_support=mstatus,
            device_sensor_status_support=dstatus,
        )

    def encode(self) -> bytes:
        v = c.bits(
            self.measurement_status_support is not None,
            self.device_sensor_status_support is not None,
            self.spot_check_measurement_storage,
            self.spot_check_timestamp,
            self.spo2pr_fast,
            self.spo2pr_slow,
            self.pulse_amplitude_index,
            self.multiple_bonds,
        )
        out = c.u16(v)
        if self.measurement_status_support is not None:
            out += c.u16(c.names_to_bits(self.measurement_status_support, MEASUREMENT_STATUS))
        if self.device_sensor_status_support is not None:
            out += c.u24(c.names_to_bits(self.device_sensor_status_support, DEVICE_STATUS))
        return out


def decode_spot_check(data: bytes) -> Measurement:
    """PLX Spot-check 0x2A5E -> SpO2, pulse rate (+ PAI); clock_set from flag b4."""
    cur = Cursor(data, PlxSpotCheckRecord.SOURCE)
    rec = PlxSpotCheckRecord.read(cur)
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=rec.spo2pr.observations() + _pai(rec.pulse_amplitude_index),
        kind=Kind.SPOT,
        timestamp=rec.time_stamp,
        clock_set=not rec.clock_not_set,
        flags=_status_flags(rec.measurement_status, rec.device_sensor_status) + c.trailing(cur),
    )


def decode_continuous(data: bytes) -> Measurement:
    """PLX Continuous 0x2A5F -> Normal SpO2/PR (+ Fast/Slow flagged by modality, + PAI)."""
    cur = Cursor(data, PlxContinuousRecord.SOURCE)
    rec = PlxContinuousRecord.read(cur)
    obs = rec.normal.observations()
    if rec.fast is not None:
        obs += rec.fast.observations(("modality:fast",))
    if rec.slow is not None:
        obs += rec.slow.observations(("modality:slow",))
    return Measurement(
        source=rec.SOURCE,
        raw=bytes(data),
        observations=obs + _pai(rec.pulse_amplitude_index),
        kind=Kind.CONTINUOUS,
        flags=_status_flags(rec.measurement_status, rec.device_sensor_status) + c.trailing(cur),
    )


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="2a5e",
        name="PLX Spot-check Measurement",
        decode=decode_spot_check,
        transport="ble",
        kind=Kind.SPOT,
        characteristic=SPOT_UUID,
        service=SERVICE,
    ),
    Driver(
        key="2a5f",
        name="PLX Continuous Measurement",
        decode=decode_continuous,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=CONTINUOUS_UUID,
        service=SERVICE,
    ),
)

PARSERS: tuple[Parser, ...] = (Parser("2a60", "PLX Features", PlxFeatures.parse, FEATURES_UUID),)
