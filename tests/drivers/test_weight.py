"""Weight Measurement 0x2A9D and Weight Scale Feature 0x2A9E."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from drivers.weight import (
    WeightFeature,
    WeightRecord,
    counts,
    decode_weight,
    mass_counts,
    scaled,
)
from tests.drivers.fuzz_support import check_arbitrary
from tests.drivers.strategies import device_times, same

KG = ("kg", codes.MDC_DIM_KILO_G)
LB = ("[lb_av]", codes.MDC_DIM_LB)
M = ("m", codes.MDC_DIM_X_M)
IN = ("[in_i]", codes.MDC_DIM_INCH)
BMI = ("kg/m2", codes.MDC_DIM_KG_PER_M_SQ)


def q(value: str | Special, unit: tuple[str, int]) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit[0], unit[1], value)
    return Quantity(D(value), unit[0], unit[1])


def weight(value: Quantity, original: Quantity | None = None) -> Observation:
    return Observation(codes.MDC_MASS_BODY_ACTUAL, value, ("29463-7",), original)


def bmi(value: str) -> Observation:
    return Observation(codes.MDC_RATIO_MASS_BODY_LEN_SQ, q(value, BMI), ("39156-5",))


def height(value: Quantity, original: Quantity | None = None) -> Observation:
    return Observation(codes.MDC_LEN_BODY_ACTUAL, value, ("8302-2",), original)


# oliexdev/openScale AndUC352BLEHandlerTest.kt "decodes captured standard weight indications":
# A&D UC-352BLE, flags 0x02 (time stamp), 65.7 / 65.6 / 65.9 kg on 2026-08-22.
AND_CAPTURES = [
    ("025433ea070816082a24", "65.700", DeviceTime(2026, 8, 22, 8, 42, 36)),
    ("024033ea070816082b0b", "65.600", DeviceTime(2026, 8, 22, 8, 43, 11)),
    ("027c33ea070816082b28", "65.900", DeviceTime(2026, 8, 22, 8, 43, 40)),
]


@pytest.mark.parametrize(("hexdata", "kg", "ts"), AND_CAPTURES)
def test_and_uc352_captures(hexdata: str, kg: str, ts: DeviceTime) -> None:
    data = bytes.fromhex(hexdata)
    same(
        decode_weight(data),
        Measurement(
            source="2a9d",
            raw=data,
            observations=(weight(q(kg, KG)),),
            kind=Kind.SPOT,
            timestamp=ts,
        ),
    )


# oliexdev/openScale issue #219 (Beurer BF 600 debug log, "Step Nr 15"): flags 0x0E, 61.370 kg,
# 2021-07-23 21:33:31, scale user index 2, BMI 21.2, height 1.700 m.
BEURER_BF600 = bytes.fromhex("0EF22FE5070717152 11F02D400A406".replace(" ", ""))


def test_beurer_bf600_capture() -> None:
    same(
        decode_weight(BEURER_BF600),
        Measurement(
            source="2a9d",
            raw=BEURER_BF600,
            observations=(weight(q("61.370", KG)), bmi("21.2"), height(q("1.700", M))),
            timestamp=DeviceTime(2021, 7, 23, 21, 33, 31),
            user_id=2,
        ),
    )


def test_si_full_record() -> None:
    # flags 0x0E: time stamp, user 3, BMI 22.9 and height 1.750 m; weight 14000 x 0.005 = 70.000 kg.
    data = bytes.fromhex("0e b036 e807051107080a 03 e500 d606".replace(" ", ""))
    same(
        decode_weight(data),
        Measurement(
            source="2a9d",
            raw=data,
            observations=(weight(q("70.000", KG)), bmi("22.9"), height(q("1.750", M))),
            timestamp=DeviceTime(2024, 5, 17, 7, 8, 10),
            user_id=3,
        ),
    )
    same(
        WeightRecord.parse(data),
        WeightRecord(
            False, D("70.000"), DeviceTime(2024, 5, 17, 7, 8, 10), 3, D("22.9"), D("1.750")
        ),
    )


def test_imperial_converted_with_original() -> None:
    # flags 0x09: imperial + BMI/height; 15000 x 0.01 = 150.00 lb; 700 x 0.1 = 70.0 in; BMI 21.5.
    data = bytes.fromhex("09 983a d700 bc02".replace(" ", ""))
    same(
        decode_weight(data),
        Measurement(
            source="2a9d",
            raw=data,
            observations=(
                weight(q("68.039", KG), q("150.00", LB)),  # 68.0388555 kg, rounded at 0.001
                bmi("21.5"),
                height(q("1.778", M), q("70.0", IN)),  # 1.778 m exactly
            ),
        ),
    )


def test_measurement_unsuccessful_with_user_and_time() -> None:
    # WSS: weight 0xFFFF = Measurement Unsuccessful, may carry time stamp and user id.
    data = bytes.fromhex("07 ffff e807051107080a ff".replace(" ", ""))
    same(
        decode_weight(data),
        Measurement(
            source="2a9d",
            raw=data,
            observations=(weight(q(Special.UNSUCCESSFUL, KG), q(Special.UNSUCCESSFUL, LB)),),
            timestamp=DeviceTime(2024, 5, 17, 7, 8, 10),
            user_id=0xFF,  # unknown user: kept, never attributed by the hub
        ),
    )
    same(
        decode_weight(bytes.fromhex("00ffff")).observations,
        (weight(q(Special.UNSUCCESSFUL, KG)),),
    )


def test_rfu_flags_ignored_and_trailing_octets_exposed() -> None:
    # Detecto-style flag b4 ("below zero") is RFU for us: ignored. Two extra octets: accepted.
    data = bytes.fromhex("f0 0000 0102".replace(" ", ""))
    same(
        decode_weight(data),
        Measurement(
            source="2a9d",
            raw=data,
            observations=(weight(q("0.000", KG)),),
            flags=("trailing-octets:2",),
        ),
    )


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        ("", "flags", 0),
        ("00 10".replace(" ", ""), "weight", 1),
        ("02 1027 e807".replace(" ", ""), "time stamp", 3),
        ("02 1027 0000 0d 01 000000".replace(" ", ""), "time stamp.month", 5),
        ("02 1027 e807 02 1e 000000".replace(" ", ""), "time stamp.day", 6),
        ("02 1027 e807 01 01 003c00".replace(" ", ""), "time stamp.minutes", 8),
        ("02 1027 e807 01 01 00003c".replace(" ", ""), "time stamp.seconds", 9),
        ("02 1027 0500 01 01 000000".replace(" ", ""), "time stamp.year", 3),
        ("04 1027".replace(" ", ""), "user id", 3),
        ("08 1027 e5".replace(" ", ""), "bmi", 3),
        ("08 1027 e500 d6".replace(" ", ""), "height", 5),
    ],
)
def test_decode_errors(data: str, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as err:
        decode_weight(bytes.fromhex(data))
    assert (err.value.source, err.value.field, err.value.offset) == ("2a9d", field, offset)


def test_encode_rejects_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="bmi and height come together"):
        WeightRecord(False, D(70), bmi=D("22.9")).encode()
    with pytest.raises(ValueError, match=r"not a uint16 multiple of 0\.005"):
        WeightRecord(False, D("70.001")).encode()
    with pytest.raises(ValueError, match="not a uint16 multiple"):
        counts(D("327.675"), D("0.005"), "weight", 0xFFFE)
    with pytest.raises(ValueError, match="weight cannot be nan"):
        mass_counts(Special.NAN, False, "weight")
    assert scaled(14000, D("0.005")).as_tuple() == D("70.000").as_tuple()
    assert WeightRecord(True, Special.UNSUCCESSFUL).encode() == b"\x01\xff\xff"


def test_feature() -> None:
    # time stamp + multiple users + BMI, weight resolution 4 (0.05 kg / 0.1 lb), height 3.
    value = 0b111 | 4 << 3 | 3 << 7 | 0xFFC00000  # RFU b10-31 ignored
    feature = WeightFeature.parse(value.to_bytes(4, "little"))
    assert feature == WeightFeature(True, True, True, 4, 3)
    assert (feature.weight_step(), feature.weight_step(imperial=True)) == (D("0.05"), D("0.1"))
    assert (feature.height_step(), feature.height_step(imperial=True)) == (D("0.001"), D("0.1"))
    reserved = WeightFeature.parse((15 << 3 | 7 << 7).to_bytes(4, "little"))
    assert reserved == WeightFeature(False, False, False, 15, 7)
    assert (reserved.weight_step(), reserved.height_step()) == (None, None)
    assert WeightFeature().weight_step() is None  # 0 = unspecified
    with pytest.raises(DecodeError, match="2a9e: features at offset 0: truncated"):
        WeightFeature.parse(b"\x00\x00\x00")


@st.composite
def records(draw: st.DrawFn) -> WeightRecord:
    imperial = draw(st.booleans())
    raw = draw(st.integers(0, 0xFFFF))
    w = (
        Special.UNSUCCESSFUL
        if raw == 0xFFFF
        else scaled(raw, D("0.01") if imperial else D("0.005"))
    )
    has_bmi = draw(st.booleans())
    return WeightRecord(
        imperial,
        w,
        draw(st.none() | device_times()),
        draw(st.none() | st.integers(0, 255)),
        scaled(draw(st.integers(0, 0xFFFF)), D("0.1")) if has_bmi else None,
        scaled(draw(st.integers(0, 0xFFFF)), D("0.1") if imperial else D("0.001"))
        if has_bmi
        else None,
    )


@given(records())
def test_record_roundtrip(rec: WeightRecord) -> None:
    assert WeightRecord.parse(rec.encode()) == rec


@given(st.booleans(), st.booleans(), st.booleans(), st.integers(0, 15), st.integers(0, 7))
def test_feature_roundtrip(a: bool, b: bool, c: bool, w: int, h: int) -> None:
    feature = WeightFeature(a, b, c, w, h)
    assert WeightFeature.parse(feature.encode()) == feature


@given(st.binary(max_size=32))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for fn in (decode_weight, WeightFeature.parse):
        check_arbitrary(fn, data)
