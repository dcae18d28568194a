"""PLX Spot-check 0x2A5E, PLX Continuous 0x2A5F, PLX Features 0x2A60.

No device capture with hex was found for PLXS. Most vectors below are built field by field from the
PLXS 1.0.1 layout (reference device-formats.md §4) and say so next to each; the last ones are bytes
from another implementation's encoder (Stanford Spezi), independent of ours.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from drivers.pulse_oximeter import (
    DEVICE_STATUS,
    MEASUREMENT_STATUS,
    PlxContinuousRecord,
    PlxFeatures,
    PlxSpotCheckRecord,
    SpO2PR,
    decode_continuous,
    decode_spot_check,
)
from tests.drivers.fuzz_support import check_arbitrary
from tests.drivers.strategies import device_times, flag_subsets, same, sfloats

PCT = ("%", codes.MDC_DIM_PERCENT)
BPM = ("/min", codes.MDC_DIM_BEAT_PER_MIN)


def q(value: str | Special, unit: tuple[str, int]) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit[0], unit[1], value)
    return Quantity(D(value), unit[0], unit[1])


def spo2(value: str | Special, flags: tuple[str, ...] = ()) -> Observation:
    return Observation(
        codes.MDC_PULS_OXIM_SAT_O2, q(value, PCT), ("59408-5", "2708-6"), flags=flags
    )


def pr(value: str | Special, flags: tuple[str, ...] = ()) -> Observation:
    return Observation(codes.MDC_PULS_OXIM_PULS_RATE, q(value, BPM), ("8867-4",), flags=flags)


def pai(value: str) -> Observation:
    return Observation(codes.MDC_PULS_OXIM_PERF_REL, q(value, PCT))


def test_spot_minimal() -> None:
    # flags 0; SpO2 97 (0x0061), PR 72 (0x0048).
    data = bytes.fromhex("00 6100 4800".replace(" ", ""))
    same(
        decode_spot_check(data),
        Measurement(
            source="2a5e",
            raw=data,
            observations=(spo2("97"), pr("72")),
            kind=Kind.SPOT,
            clock_set=True,
        ),
    )


def test_spot_full_clock_not_set() -> None:
    # flags 0x1F: time stamp, measurement status, device & sensor status, PAI, clock NOT set.
    # SpO2 98.0 (0xF3D4), PR 61 (0x003D), 2000-01-01 00:00:05 (the device's default clock),
    # measurement status 0x0180 = validated + fully qualified, device status 0x000028 = inadequate
    # signal + low perfusion, PAI 2.35 (0xE0EB).
    data = bytes.fromhex("1f d4f3 3d00 d007010100 0005 8001 280000 ebe0".replace(" ", ""))
    status = ("validated-data", "fully-qualified-data", "inadequate-signal", "low-perfusion")
    same(
        decode_spot_check(data),
        Measurement(
            source="2a5e",
            raw=data,
            observations=(spo2("98.0"), pr("61"), pai("2.35")),
            kind=Kind.SPOT,
            timestamp=DeviceTime(2000, 1, 1, 0, 0, 5),
            clock_set=False,
            flags=status,
        ),
    )
    same(
        PlxSpotCheckRecord.parse(data),
        PlxSpotCheckRecord(
            SpO2PR(D("98.0"), D(61)),
            DeviceTime(2000, 1, 1, 0, 0, 5),
            ("validated-data", "fully-qualified-data"),
            ("inadequate-signal", "low-perfusion"),
            D("2.35"),
            True,
        ),
    )


def test_spot_invalid_values_and_rfu_bits() -> None:
    # NaN SpO2 and PR (sensor off); status RFU bits 0-4 and 16-23 set and ignored; flags b5-7 RFU.
    data = bytes.fromhex("e6 ff07 ff07 3f00 0080ff 00".replace(" ", ""))
    same(
        decode_spot_check(data),
        Measurement(
            source="2a5e",
            raw=data,
            observations=(spo2(Special.NAN), pr(Special.NAN)),
            clock_set=True,
            flags=("measurement-ongoing", "sensor-disconnected", "trailing-octets:1"),
        ),
    )


def test_continuous_normal_fast_slow() -> None:
    # flags 0x1F: Fast, Slow, measurement status, device & sensor status, PAI.
    data = bytes.fromhex("1f 6100 4800 6200 4a00 6000 4700 2000 000100 0ef0".replace(" ", ""))
    same(
        decode_continuous(data),
        Measurement(
            source="2a5f",
            raw=data,
            observations=(
                spo2("97"),
                pr("72"),
                spo2("98", ("modality:fast",)),
                pr("74", ("modality:fast",)),
                spo2("96", ("modality:slow",)),
                pr("71", ("modality:slow",)),
                pai("1.4"),
            ),
            kind=Kind.CONTINUOUS,
            flags=("measurement-ongoing", "questionable-pulse"),
        ),
    )


def test_continuous_minimal_and_trailing() -> None:
    data = bytes.fromhex("00 6100 4800 00".replace(" ", ""))
    same(
        decode_continuous(data),
        Measurement(
            source="2a5f",
            raw=data,
            observations=(spo2("97"), pr("72")),
            kind=Kind.CONTINUOUS,
            flags=("trailing-octets:1",),
        ),
    )
    assert PlxContinuousRecord.parse(data) == PlxContinuousRecord(SpO2PR(D(97), D(72)))


@pytest.mark.parametrize(
    ("fn", "data", "source", "field", "offset"),
    [
        (decode_spot_check, "", "2a5e", "flags", 0),
        (decode_spot_check, "00 61", "2a5e", "spot-check spo2", 1),
        (decode_spot_check, "00 6100 48", "2a5e", "spot-check pulse rate", 3),
        (decode_spot_check, "01 6100 4800 e807", "2a5e", "time stamp", 5),
        (decode_spot_check, "01 6100 4800 e8070d01000000", "2a5e", "time stamp.month", 7),
        (decode_spot_check, "02 6100 4800 00", "2a5e", "measurement status", 5),
        (decode_spot_check, "04 6100 4800 0000", "2a5e", "device and sensor status", 5),
        (decode_spot_check, "08 6100 4800 00", "2a5e", "pulse amplitude index", 5),
        (decode_continuous, "", "2a5f", "flags", 0),
        (decode_continuous, "00 6100", "2a5f", "normal pulse rate", 3),
        (decode_continuous, "01 6100 4800 62", "2a5f", "fast spo2", 5),
        (decode_continuous, "02 6100 4800 6200", "2a5f", "slow pulse rate", 7),
        (decode_continuous, "03 6100 4800 6200 4a00", "2a5f", "slow spo2", 9),
        (decode_continuous, "04 6100 4800", "2a5f", "measurement status", 5),
        (decode_continuous, "08 6100 4800 0000", "2a5f", "device and sensor status", 5),
        (decode_continuous, "10 6100 4800 0e", "2a5f", "pulse amplitude index", 5),
        (PlxFeatures.parse, "00", "2a60", "supported features", 0),
        (PlxFeatures.parse, "0100 00", "2a60", "measurement status support", 2),
        (PlxFeatures.parse, "0200 0000", "2a60", "device and sensor status support", 2),
    ],
)
def test_decode_errors(fn: object, data: str, source: str, field: str, offset: int) -> None:
    assert callable(fn)
    with pytest.raises(DecodeError) as err:
        fn(bytes.fromhex(data.replace(" ", "")))
    assert (err.value.source, err.value.field, err.value.offset) == (source, field, offset)


def test_features() -> None:
    # 0x00FF: everything; measurement status support 0xFFE0 (all defined bits), device & sensor
    # status support 0x00FFFF (all 16 flags); RFU b8-15 of the features are ignored.
    data = bytes.fromhex("ffff e0ff ffff00".replace(" ", ""))
    same(
        PlxFeatures.parse(data),
        PlxFeatures(
            True,
            True,
            True,
            True,
            True,
            True,
            tuple(MEASUREMENT_STATUS),
            tuple(DEVICE_STATUS),
        ),
    )
    same(PlxFeatures.parse(bytes.fromhex("0c00")), PlxFeatures(True, True))


def test_device_status_maps_to_reversed_mdc_components() -> None:
    assert codes.PLX_DEVICE_STATUS["sensor-disconnected"] == (15, 0)
    assert codes.PLX_DEVICE_STATUS["extended-display-update-ongoing"] == (0, 15)


pairs = st.builds(SpO2PR, sfloats, sfloats)
mstatus = st.none() | flag_subsets(MEASUREMENT_STATUS)
dstatus = st.none() | flag_subsets(DEVICE_STATUS)


@given(
    st.builds(
        PlxSpotCheckRecord,
        pairs,
        st.none() | device_times(),
        mstatus,
        dstatus,
        st.none() | sfloats,
        st.booleans(),
    )
)
def test_spot_roundtrip(rec: PlxSpotCheckRecord) -> None:
    assert PlxSpotCheckRecord.parse(rec.encode()) == rec


@given(
    st.builds(
        PlxContinuousRecord,
        pairs,
        st.none() | pairs,
        st.none() | pairs,
        mstatus,
        dstatus,
        st.none() | sfloats,
    )
)
def test_continuous_roundtrip(rec: PlxContinuousRecord) -> None:
    assert PlxContinuousRecord.parse(rec.encode()) == rec


@given(
    st.builds(
        PlxFeatures,
        *(st.booleans() for _ in range(6)),
        mstatus,
        dstatus,
    )
)
def test_features_roundtrip(features: PlxFeatures) -> None:
    assert PlxFeatures.parse(features.encode()) == features


@given(st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for fn in (decode_spot_check, decode_continuous, PlxFeatures.parse):
        check_arbitrary(fn, data)


# -- Independent vectors ------------------------------------------------------------------------
# Bytes produced by another implementation's PLXS encoder, not ours: StanfordSpezi/SpeziBluetooth,
# Tests/SpeziBluetoothServicesTests/PLXTests.swift (MIT), as decimal byte arrays there.


def test_spezi_spot_check_with_every_optional_field() -> None:
    # testSpotCheckMeasurementCoding: SpO2 94, PR 147, 2024-11-29 23:08:57, status
    # {ongoing, questionable}, device {equipment malfunction, low perfusion}, PAI 8.7.
    data = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    same(
        PlxSpotCheckRecord.parse(data),
        PlxSpotCheckRecord(
            SpO2PR(D("94.0"), D("147.0")),
            DeviceTime(2024, 11, 29, 23, 8, 57),
            ("measurement-ongoing", "questionable-measurement-detected"),
            ("equipment-malfunction", "low-perfusion"),
            D("8.70"),
            False,
        ),
    )
    m = decode_spot_check(data)
    assert m.observations == (spo2("94.0"), pr("147.0"), pai("8.70"))
    assert m.timestamp == DeviceTime(2024, 11, 29, 23, 8, 57)
    assert m.clock_set is True


def test_spezi_continuous_simple_and_full() -> None:
    # testSimpleMeasurementCoding: SpO2 95, PR 90, status ongoing, device status empty, PAI 8.7.
    simple = bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240])
    same(
        PlxContinuousRecord.parse(simple),
        PlxContinuousRecord(
            SpO2PR(D(95), D(90)), None, None, ("measurement-ongoing",), (), D("8.7")
        ),
    )
    # testFullMeasurementCoding: normal 99/97, fast 97/137, slow 98/69, {ongoing, fully
    # qualified}, device status empty, PAI 8.9.
    full = bytes(
        [31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227]
    )
    same(
        PlxContinuousRecord.parse(full),
        PlxContinuousRecord(
            SpO2PR(D("99.0"), D("97.0")),
            SpO2PR(D("97.0"), D("137.0")),
            SpO2PR(D("98.0"), D("69.0")),
            ("measurement-ongoing", "fully-qualified-data"),
            (),
            D("8.90"),
        ),
    )
    # testVerySimpleMeasurementCoding: flags 0, SpO2 100, PR 90 with exponent 0.
    assert decode_continuous(bytes([0, 100, 0, 90, 0])).observations == (spo2("100"), pr("90"))


def test_spezi_features() -> None:
    # testPLXFeaturesCoding: measurement-status and device-status support present, SpO2PR-Slow,
    # multiple bonds; supports {calibration ongoing, early estimated}; {nonpulsatile, questionable
    # pulse}.
    same(
        PlxFeatures.parse(bytes([163, 0, 64, 16, 128, 1, 0])),
        PlxFeatures(
            spo2pr_slow=True,
            multiple_bonds=True,
            measurement_status_support=("early-estimated-data", "calibration-ongoing"),
            device_sensor_status_support=("nonpulsatile-signal", "questionable-pulse"),
        ),
    )
