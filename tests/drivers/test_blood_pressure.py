"""Blood Pressure Measurement 0x2A35, Intermediate Cuff Pressure 0x2A36, BP Feature 0x2A49."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.blood_pressure import (
    BloodPressureFeature,
    BloodPressureRecord,
    BloodPressureStatus,
    IntermediateCuffPressureRecord,
    decode_bpm,
    decode_icp,
)
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from tests.drivers.fuzz_support import check_arbitrary
from tests.drivers.strategies import device_times, same, sfloats

MMHG = ("mm[Hg]", codes.MDC_DIM_MMHG)
KPA = ("kPa", codes.MDC_DIM_KILO_PASCAL)
BPM = ("/min", codes.MDC_DIM_BEAT_PER_MIN)
PANEL = codes.MDC_PRESS_BLD_NONINV


def q(value: str | Special, unit: tuple[str, int]) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit[0], unit[1], value)
    return Quantity(D(value), unit[0], unit[1])


def bp_obs(
    sys: Quantity, dia: Quantity, mean: Quantity, originals: tuple[Quantity, ...] | None = None
) -> tuple[Observation, ...]:
    o = originals or (None, None, None)
    return (
        Observation(codes.MDC_PRESS_BLD_NONINV_SYS, sys, ("8480-6",), o[0], PANEL),
        Observation(codes.MDC_PRESS_BLD_NONINV_DIA, dia, ("8462-4",), o[1], PANEL),
        Observation(codes.MDC_PRESS_BLD_NONINV_MEAN, mean, ("8478-0",), o[2], PANEL),
    )


def pulse(value: str | Special) -> Observation:
    return Observation(codes.MDC_PULS_RATE_NON_INV, q(value, BPM), ("8867-4",))


# Nordic Android-BLE-Common-Library, BloodPressureMeasurementDataCallbackTest
# .onBloodPressureMeasurementReceived_full: mmHg, time stamp with unknown year, pulse, user 1,
# status 0b100111.
NORDIC_FULL = bytes.fromhex("1e8a00580078000000041114293b3c00012700")
# ...._some: kPa, pulse rate, status 0b010010 (cuff too loose, pulse below lower limit).
NORDIC_SOME = bytes.fromhex("15bdf00b009ff03c001200")
# ...._minimal: mmHg 18.9/11/15.9 and nothing else.
NORDIC_MINIMAL = bytes.fromhex("00bdf00b009ff0")
# HEADS-project/ThingML-BLE Documentation/AND_Medical_UA651BLE.md: a real A&D UA-651BLE reading
# (125/80, MAP 102, 2017-01-16 12:39:54, pulse 64) and a stored error record (every value NaN).
AND_READING = bytes.fromhex("167d0050006600e10701100c2736400000 00".replace(" ", ""))
AND_ERROR = bytes.fromhex("16ff07ff07ff07e107010e162c04ff070000")


def test_nordic_full() -> None:
    m = decode_bpm(NORDIC_FULL)
    same(
        m,
        Measurement(
            source="2a35",
            raw=NORDIC_FULL,
            observations=(*bp_obs(q("138", MMHG), q("88", MMHG), q("120", MMHG)), pulse("60")),
            kind=Kind.SPOT,
            timestamp=DeviceTime(0, 4, 17, 20, 41, 59),
            user_id=1,
            flags=("body-movement", "cuff-too-loose", "irregular-pulse", "improper-position"),
        ),
    )
    same(
        BloodPressureRecord.parse(NORDIC_FULL),
        BloodPressureRecord(
            unit="mm[Hg]",
            systolic=D(138),
            diastolic=D(88),
            mean_arterial_pressure=D(120),
            time_stamp=DeviceTime(0, 4, 17, 20, 41, 59),
            pulse_rate=D(60),
            user_id=1,
            status=BloodPressureStatus(True, True, True, "within-range", True),
        ),
    )
    assert m.timestamp is not None and m.timestamp.naive() is None  # unknown year: no ISO time


def test_nordic_some_kpa_converted_with_original() -> None:
    # 18.9 kPa = 141.76... mmHg -> 141.8 (same exponent); 11 kPa -> 83; 15.9 kPa -> 119.3.
    same(
        decode_bpm(NORDIC_SOME),
        Measurement(
            source="2a35",
            raw=NORDIC_SOME,
            observations=(
                *bp_obs(
                    q("141.8", MMHG),
                    q("83", MMHG),
                    q("119.3", MMHG),
                    (q("18.9", KPA), q("11", KPA), q("15.9", KPA)),
                ),
                pulse("60"),
            ),
            flags=("cuff-too-loose", "pulse-under-range"),
        ),
    )


def test_nordic_minimal() -> None:
    same(
        decode_bpm(NORDIC_MINIMAL),
        Measurement(
            source="2a35",
            raw=NORDIC_MINIMAL,
            observations=bp_obs(q("18.9", MMHG), q("11", MMHG), q("15.9", MMHG)),
        ),
    )


def test_and_ua651_reading_and_error_record() -> None:
    same(
        decode_bpm(AND_READING),
        Measurement(
            source="2a35",
            raw=AND_READING,
            observations=(*bp_obs(q("125", MMHG), q("80", MMHG), q("102", MMHG)), pulse("64")),
            timestamp=DeviceTime(2017, 1, 16, 12, 39, 54),
        ),
    )
    nan = q(Special.NAN, MMHG)
    same(
        decode_bpm(AND_ERROR),
        Measurement(
            source="2a35",
            raw=AND_ERROR,
            observations=(*bp_obs(nan, nan, nan), pulse(Special.NAN)),
            timestamp=DeviceTime(2017, 1, 14, 22, 44, 4),
        ),
    )


def test_kpa_special_values_stay_special_in_mmhg() -> None:
    data = bytes.fromhex("01 0008 fe07 0208".replace(" ", ""))
    same(
        decode_bpm(data),
        Measurement(
            source="2a35",
            raw=data,
            observations=bp_obs(
                q(Special.NRES, MMHG),
                q(Special.POS_INF, MMHG),
                q(Special.NEG_INF, MMHG),
                (q(Special.NRES, KPA), q(Special.POS_INF, KPA), q(Special.NEG_INF, KPA)),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("status", "flags", "rng"),
    [
        (0b01000, ("pulse-over-range",), "exceeds-upper-limit"),
        (0b10000, ("pulse-under-range",), "below-lower-limit"),
        (0b11000, ("pulse-rate-range-reserved",), "reserved"),
        (0xFFC0, (), "within-range"),  # RFU bits 6-15 ignored
    ],
)
def test_status_pulse_range_and_rfu(status: int, flags: tuple[str, ...], rng: str) -> None:
    data = bytes([0x10]) + bytes.fromhex("7800 5000 5a00") + status.to_bytes(2, "little")
    m = decode_bpm(data)
    assert m.flags == flags
    rec = BloodPressureRecord.parse(data)
    assert rec.status == BloodPressureStatus(pulse_rate_range=rng)  # type: ignore[arg-type]


def test_user_unknown_and_rfu_flags_and_trailing_octets() -> None:
    # flags 0xE8: RFU b5-7 set (ignored), user id 0xFF (unknown user), 2 trailing octets.
    data = bytes.fromhex("e8 7800 5000 5a00 ff abcd".replace(" ", ""))
    same(
        decode_bpm(data),
        Measurement(
            source="2a35",
            raw=data,
            observations=bp_obs(q("120", MMHG), q("80", MMHG), q("90", MMHG)),
            user_id=0xFF,  # unknown user: kept, never attributed by the hub
            flags=("trailing-octets:2",),
        ),
    )
    assert BloodPressureRecord.parse(data).user_id == 0xFF


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        ("", "flags", 0),
        ("00", "systolic", 1),
        ("007800", "diastolic", 3),
        ("0078005000", "mean arterial pressure", 5),
        ("0078005000 5a".replace(" ", ""), "mean arterial pressure", 5),
        ("02 7800 5000 5a00 e107".replace(" ", ""), "time stamp", 7),  # Nordic _noTimestamp
        ("04 7800 5000 5a00 3c".replace(" ", ""), "pulse rate", 7),
        ("08 7800 5000 5a00".replace(" ", ""), "user id", 7),
        ("10 7800 5000 5a00 00".replace(" ", ""), "measurement status", 7),
        ("02 7800 5000 5a00 e1070d01000000".replace(" ", ""), "time stamp.month", 9),
        ("02 7800 5000 5a00 e107021e000000".replace(" ", ""), "time stamp.day", 10),
        ("02 7800 5000 5a00 e10701011800 00".replace(" ", ""), "time stamp.hours", 11),
    ],
)
def test_decode_errors(data: str, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as err:
        decode_bpm(bytes.fromhex(data))
    assert (err.value.source, err.value.field, err.value.offset) == ("2a35", field, offset)


def test_nordic_invalid_vectors() -> None:
    # Nordic ..._toShort (6 octets) and ..._noTimestamp (flags 3, 7 octets).
    with pytest.raises(DecodeError, match="mean arterial pressure at offset 5: truncated"):
        decode_bpm(bytes([1, 2, 3, 4, 5, 6]))
    with pytest.raises(DecodeError, match="time stamp at offset 7: truncated: needs 7"):
        decode_bpm(bytes([3, 2, 3, 4, 5, 6, 7]))


# Nordic IntermediateCuffPressureDataCallbackTest ..._full / _some / _minimal: diastolic and MAP 0.
ICP_FULL = bytes.fromhex("1e0400000000000000041114293b3c00012700")
ICP_SOME = bytes.fromhex("156ff0000000003c001200")
ICP_MINIMAL = bytes.fromhex("00d7f000000000")


def test_icp_vectors() -> None:
    cuff = codes.MDC_PRESS_CUFF
    same(
        decode_icp(ICP_FULL),
        Measurement(
            source="2a36",
            raw=ICP_FULL,
            observations=(Observation(cuff, q("4", MMHG)), pulse("60")),
            kind=Kind.INTERMEDIATE,
            timestamp=DeviceTime(0, 4, 17, 20, 41, 59),
            user_id=1,
            flags=("body-movement", "cuff-too-loose", "irregular-pulse", "improper-position"),
        ),
    )
    same(
        decode_icp(ICP_SOME),
        Measurement(
            source="2a36",
            raw=ICP_SOME,
            observations=(Observation(cuff, q("83.3", MMHG), (), q("11.1", KPA)), pulse("60")),
            kind=Kind.INTERMEDIATE,
            flags=("cuff-too-loose", "pulse-under-range"),
        ),
    )
    same(
        decode_icp(ICP_MINIMAL + b"\x00"),
        Measurement(
            source="2a36",
            raw=ICP_MINIMAL + b"\x00",
            observations=(Observation(cuff, q("21.5", MMHG)),),
            kind=Kind.INTERMEDIATE,
            flags=("trailing-octets:1",),
        ),
    )
    same(
        IntermediateCuffPressureRecord.parse(ICP_MINIMAL),
        IntermediateCuffPressureRecord("mm[Hg]", D("21.5"), D(0), D(0)),
    )
    with pytest.raises(DecodeError) as err:
        decode_icp(bytes([1, 2, 3, 4, 5, 6]))
    assert err.value.source == "2a36"


def test_feature() -> None:
    # A&D UA-651BLE exposes 0x2A49; 0x0007 = body movement, cuff fit, irregular pulse.
    assert BloodPressureFeature.parse(bytes.fromhex("0700")) == BloodPressureFeature(
        True, True, True, False, False, False
    )
    assert BloodPressureFeature.parse(bytes.fromhex("f8ff")) == BloodPressureFeature(
        False, False, False, True, True, True
    )
    with pytest.raises(DecodeError, match="2a49: features at offset 0: truncated"):
        BloodPressureFeature.parse(b"\x07")


statuses = st.builds(
    BloodPressureStatus,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["within-range", "exceeds-upper-limit", "below-lower-limit", "reserved"]),
    st.booleans(),
)
records = st.builds(
    BloodPressureRecord,
    st.sampled_from(["mm[Hg]", "kPa"]),
    sfloats,
    sfloats,
    sfloats,
    st.none() | device_times(),
    st.none() | sfloats,
    st.none() | st.integers(0, 255),
    st.none() | statuses,
)


@given(records)
def test_record_roundtrip(rec: BloodPressureRecord) -> None:
    assert BloodPressureRecord.parse(rec.encode()) == rec
    icp = IntermediateCuffPressureRecord(*(getattr(rec, f.name) for f in fields(rec)))
    assert IntermediateCuffPressureRecord.parse(icp.encode()) == icp


@given(st.builds(BloodPressureFeature, *(st.booleans() for _ in range(6))))
def test_feature_roundtrip(feature: BloodPressureFeature) -> None:
    assert BloodPressureFeature.parse(feature.encode()) == feature


@given(st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for fn in (decode_bpm, decode_icp, BloodPressureFeature.parse):
        check_arbitrary(fn, data)
