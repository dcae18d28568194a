"""Glucose Measurement 0x2A18 and Glucose Measurement Context 0x2A34.

Vectors: reference device-formats.md §5.2 (0xB069 = 105 mg/dL, 0xC03A = 5.8 mmol/L);
NordicSemiconductor/Android-BLE-Common-Library
``ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/glucose/
GlucoseMeasurementDataCallbackTest.java`` and ``GlucoseMeasurementContextDataCallbackTest.java``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.driver import Parser
from drivers.errors import DecodeError
from drivers.glucose import (
    DRIVERS,
    PARSERS,
    SENSOR_STATUS,
    GlucoseContext,
    GlucoseRecord,
    apply_context,
    decode_measurement,
)
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from tests.drivers.strategies import device_times, flag_subsets, same, sfloats

MG_DL = ("mg/dL", codes.MDC_DIM_MILLI_G_PER_DL)
MMOL_L = ("mmol/L", codes.MDC_DIM_MILLI_MOLE_PER_L)
KG_L = ("kg/L", codes.MDC_DIM_KG_PER_L)
MOL_L = ("mol/L", codes.MDC_DIM_MOLE_PER_L)
T = DeviceTime(2024, 5, 17, 8, 30, 0)
T_HEX = "e8070511081e00"


TRUNC_2_1 = "truncated: needs 2 octet(s), 1 left"
TRUNC_1_0 = "truncated: needs 1 octet(s), 0 left"


def q(value: str | Special, unit: tuple[str, int]) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit[0], unit[1], value)
    return Quantity(D(value), unit[0], unit[1])


def glucose(
    metric: int,
    value: str | Special,
    unit: tuple[str, int],
    original: tuple[str | Special, tuple[str, int]],
    loinc: tuple[str, ...],
    sample: tuple[str, str],
) -> Observation:
    flags = (f"sample-type:{sample[0]}", f"sample-location:{sample[1]}")
    return Observation(metric, q(value, unit), loinc, q(*original), None, flags)


def error_of(data: bytes) -> tuple[str, str, int, str]:
    with pytest.raises(DecodeError) as exc:
        decode_measurement(data)
    e = exc.value
    return (e.source, e.field, e.offset, e.reason)


# -- measurement -------------------------------------------------------------------------------
def test_reference_105_mg_dl() -> None:
    # flags 0x02 (concentration, kg/L), seq 7, 2024-05-17 08:30:00, SFLOAT 0xB069, type 1 finger.
    data = bytes.fromhex("020700" + T_HEX + "69b0" + "11")
    rec = GlucoseRecord(7, T, None, D("0.00105"), "kg/L", 1, 1)
    same(GlucoseRecord.parse(data), rec)
    assert rec.encode() == data
    same(
        decode_measurement(data),
        Measurement(
            "2a18",
            data,
            (
                glucose(
                    codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD,
                    "105",
                    MG_DL,
                    ("0.00105", KG_L),
                    ("2339-0",),
                    ("capillary-whole-blood", "finger"),
                ),
            ),
            kind=Kind.SPOT,
            timestamp=T,
            sequence=7,
        ),
    )


def test_reference_5_8_mmol_l() -> None:
    # flags 0x06 (concentration, mol/L), seq 0x0102, SFLOAT 0xC03A, type 2 capillary plasma, AST.
    data = bytes.fromhex("060201" + T_HEX + "3ac0" + "22")
    same(
        decode_measurement(data),
        Measurement(
            "2a18",
            data,
            (
                glucose(
                    codes.MDC_CONC_GLU_CAPILLARY_PLASMA,
                    "5.8",
                    MMOL_L,
                    ("0.0058", MOL_L),
                    ("15074-8",),
                    ("capillary-plasma", "alternate-site-test"),
                ),
            ),
            kind=Kind.SPOT,
            timestamp=T,
            sequence=0x0102,
        ),
    )


NORDIC = bytes([0b011011, 1, 0, 0xE3, 0x07, 2, 27, 11, 10, 30, 0xFB, 0xFF, 30, 0, 0x12, 0b101, 0b1])


def test_nordic_vector_30_kg_per_l() -> None:
    # GlucoseMeasurementDataCallbackTest.onGlucoseMeasurementReceived: seq 1, 2019-02-27
    # 11:10:30, offset -5 min, 30 kg/L (synthetic, §8.13), capillary plasma at the finger,
    # status 261 = battery low + sample size insufficient + temperature too low, context follows.
    base = DeviceTime(2019, 2, 27, 11, 10, 30)
    status = ("battery-low", "sample-size-insufficient", "temperature-too-low")
    rec = GlucoseRecord(1, base, -5, D(30), "kg/L", 2, 1, status, True)
    same(GlucoseRecord.parse(NORDIC), rec)
    assert rec.encode() == NORDIC
    m = decode_measurement(NORDIC)
    same(
        m,
        Measurement(
            "2a18",
            NORDIC,
            (
                glucose(
                    codes.MDC_CONC_GLU_CAPILLARY_PLASMA,
                    "3.0E+6",
                    MG_DL,
                    ("30", KG_L),
                    ("2339-0",),
                    ("capillary-plasma", "finger"),
                ),
            ),
            kind=Kind.SPOT,
            timestamp=DeviceTime(2019, 2, 27, 11, 10, 30, offset_minutes=-5),
            sequence=1,
            flags=(*status, "context-follows"),
        ),
    )
    assert m.timestamp is not None
    assert m.timestamp.naive() == datetime(2019, 2, 27, 11, 5, 30)  # Nordic asserts minute 5
    assert m.observations[0].quantity.value == 3_000_000


def test_nordic_invalid_vector() -> None:
    # onInvalidDataReceived: flags announce time offset, concentration and status, but the record
    # is 3 octets short of the annunciation.
    data = bytes([0b011011, 0, 0, 0xE2, 0x07, 4, 26, 11, 9, 30, 30, 0, 0x12, 0b101, 0b1])
    assert error_of(data) == (
        "2a18",
        "sensor status annunciation",
        15,
        "truncated: needs 2 octet(s), 0 left",
    )


@pytest.mark.parametrize(
    ("nibbles", "sample"),
    [
        (0x1A, ("control-solution", "finger")),  # type 10
        (0x41, ("capillary-whole-blood", "control-solution")),  # location 4
    ],
)
def test_control_solution_is_never_a_patient_observation(
    nibbles: int, sample: tuple[str, str]
) -> None:
    data = bytes.fromhex("020300" + T_HEX + "69b0") + bytes((nibbles,))
    same(
        decode_measurement(data),
        Measurement(
            "2a18",
            data,
            (glucose(codes.MDC_CONC_GLU_CONTROL, "105", MG_DL, ("0.00105", KG_L), (), sample),),
            kind=Kind.CONTROL,
            timestamp=T,
            sequence=3,
        ),
    )


@pytest.mark.parametrize(
    ("sample_type", "metric", "loinc", "name"),
    [
        (3, codes.MDC_CONC_GLU_VENOUS_WHOLEBLOOD, ("15074-8",), "venous-whole-blood"),
        (4, codes.MDC_CONC_GLU_VENOUS_PLASMA, ("15074-8",), "venous-plasma"),
        (5, codes.MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD, ("15074-8",), "arterial-whole-blood"),
        (6, codes.MDC_CONC_GLU_ARTERIAL_PLASMA, ("15074-8",), "arterial-plasma"),
        (7, codes.MDC_CONC_GLU_GEN, ("15074-8",), "undetermined-whole-blood"),
        (8, codes.MDC_CONC_GLU_UNDETERMINED_PLASMA, ("15074-8",), "undetermined-plasma"),
        (9, codes.MDC_CONC_GLU_ISF, (), "interstitial-fluid"),
        (0, codes.MDC_CONC_GLU_GEN, (), "reserved"),
        (11, codes.MDC_CONC_GLU_GEN, (), "reserved"),
    ],
)
def test_metric_by_sample_type(
    sample_type: int, metric: int, loinc: tuple[str, ...], name: str
) -> None:
    # location 15 "not available"; mol/L.
    data = bytes.fromhex("060000" + T_HEX + "3ac0") + bytes((0xF0 | sample_type,))
    (obs,) = decode_measurement(data).observations
    same(
        obs,
        glucose(metric, "5.8", MMOL_L, ("0.0058", MOL_L), loinc, (name, "not-available")),
    )


def test_reserved_location() -> None:
    data = bytes.fromhex("020000" + T_HEX + "69b0" + "51")
    rec = GlucoseRecord.parse(data)
    assert (rec.type_name, rec.location_name) == ("capillary-whole-blood", "reserved")
    assert decode_measurement(data).observations[0].flags == (
        "sample-type:capillary-whole-blood",
        "sample-location:reserved",
    )


def test_special_concentration_and_status_only_record() -> None:
    # NaN concentration (0x07FF) -> special quantity in mg/dL, original NaN kg/L.
    nan = bytes.fromhex("020000" + T_HEX + "ff07" + "11")
    (obs,) = decode_measurement(nan).observations
    same(obs.quantity, q(Special.NAN, MG_DL))
    same(obs.original, q(Special.NAN, KG_L))
    # A record with only a status (strip insertion error, b3) and an unknown date: no observation.
    data = bytes.fromhex("080500" + "00000000000000" + "0800")
    rec = GlucoseRecord.parse(data)
    assert (rec.type_name, rec.location_name, rec.is_control) == (None, None, False)
    same(
        decode_measurement(data),
        Measurement(
            "2a18",
            data,
            (),
            kind=Kind.SPOT,
            timestamp=DeviceTime(0, 0, 0, 0, 0, 0),
            sequence=5,
            flags=("strip-insertion-error",),
        ),
    )


def test_all_status_bits_and_rfu_and_trailing() -> None:
    data = bytes.fromhex("080000" + T_HEX + "ffff" + "aa")  # b12-15 RFU ignored, 1 trailing octet
    same(
        decode_measurement(data),
        Measurement(
            "2a18",
            data,
            (),
            kind=Kind.SPOT,
            timestamp=T,
            sequence=0,
            flags=(*SENSOR_STATUS, "trailing-octets:1"),
        ),
    )


def test_unit_bit_without_concentration_roundtrips() -> None:
    data = bytes.fromhex("040000" + T_HEX)
    rec = GlucoseRecord.parse(data)
    assert (rec.unit, rec.concentration, rec.encode()) == ("mol/L", None, data)


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("", "flags", 0, "truncated: needs 1 octet(s), 0 left"),
        ("0001", "sequence number", 1, "truncated: needs 2 octet(s), 1 left"),
        ("000100e80705", "base time", 3, "truncated: needs 7 octet(s), 3 left"),
        ("000100e8070d11081e00", "base time.month", 5, "13 outside 1..12 (0 = unknown)"),
        ("010100" + T_HEX + "fb", "time offset", 10, "truncated: needs 2 octet(s), 1 left"),
        ("020100" + T_HEX + "69", "glucose concentration", 10, TRUNC_2_1),
        ("020100" + T_HEX + "69b0", "type-sample location", 12, TRUNC_1_0),
        ("080100" + T_HEX + "01", "sensor status annunciation", 10, TRUNC_2_1),
    ],
)  # fmt: skip
def test_decode_errors(data: str, field: str, offset: int, reason: str) -> None:
    assert error_of(bytes.fromhex(data)) == ("2a18", field, offset, reason)


def test_fields_that_go_together() -> None:
    with pytest.raises(ValueError, match="go together"):
        GlucoseRecord(1, T, concentration=D(1))
    with pytest.raises(ValueError, match="go together"):
        GlucoseRecord(1, T, sample_type=1, sample_location=None)


@st.composite
def records(draw: st.DrawFn) -> GlucoseRecord:
    has_conc = draw(st.booleans())
    return GlucoseRecord(
        sequence_number=draw(st.integers(0, 0xFFFF)),
        base_time=draw(device_times()),
        time_offset=draw(st.none() | st.integers(-0x8000, 0x7FFF)),
        concentration=draw(sfloats) if has_conc else None,
        unit=draw(st.sampled_from(["kg/L", "mol/L"])),
        sample_type=draw(st.integers(0, 15)) if has_conc else None,
        sample_location=draw(st.integers(0, 15)) if has_conc else None,
        status=draw(st.none() | flag_subsets(SENSOR_STATUS)),
        context_follows=draw(st.booleans()),
    )


@given(records())
def test_roundtrip(rec: GlucoseRecord) -> None:
    assert GlucoseRecord.parse(rec.encode()) == rec
    m = decode_measurement(rec.encode())
    assert m.kind == (Kind.CONTROL if rec.is_control else Kind.SPOT)
    assert m.timestamp == dataclasses.replace(rec.base_time, offset_minutes=rec.time_offset or 0)


@given(st.binary(max_size=24))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_measurement(data)
    except DecodeError:
        return
    assert (m.source, m.raw) == ("2a18", data)


# -- context -----------------------------------------------------------------------------------
# Nordic onGlucoseMeasurementContextReceived_full: flags 0xFF, seq 0, extended flags 0xB3,
# carbohydrate dinner 100 (kg per the XML), meal casual, tester HCP / health minor issues (0x12),
# 60 s of exercise at 50 %, long-acting insulin 123.45 -> here SFLOAT 1235E-1 L (Nordic builds the
# SFLOATs from Java floats; the words are chosen here), HbA1c 34.5 % (SFLOAT 345E-1).
NORDIC_CONTEXT = bytes.fromhex("ff0000" + "b3" + "03" + "6400" + "04" + "12" + "3c00" + "32")
NORDIC_CONTEXT += bytes.fromhex("04" + "d3f4" + "59f1")


def test_context_nordic_full() -> None:
    ctx = GlucoseContext(
        sequence_number=0,
        extended_flags=0xB3,
        carbohydrate_id=3,
        carbohydrate=D(100),
        meal=4,
        tester=2,
        health=1,
        exercise_duration=60,
        exercise_intensity=50,
        medication_id=4,
        medication=D("123.5"),
        medication_unit="L",
        hba1c=D("34.5"),
    )
    same(GlucoseContext.parse(NORDIC_CONTEXT), ctx)
    assert ctx.encode() == NORDIC_CONTEXT
    names = (
        ctx.carbohydrate_name,
        ctx.meal_name,
        ctx.tester_name,
        ctx.health_name,
        ctx.medication_name,
    )
    hcp, minor = "health-care-professional", "minor-health-issues"
    assert names == ("dinner", "casual", hcp, minor, "long-acting-insulin")
    assert ctx.flags == ("meal:casual", f"tester:{hcp}", f"health:{minor}")


def test_context_nordic_empty_and_invalid() -> None:
    # _empty: flags 0, seq 1, in a 17-octet buffer (the rest is ignored).
    empty = bytes.fromhex("000100") + bytes(14)
    same(GlucoseContext.parse(empty), GlucoseContext(1))
    ctx = GlucoseContext(1)
    names = (ctx.carbohydrate_name, ctx.meal_name, ctx.tester_name, ctx.health_name)
    assert (names, ctx.medication_name, ctx.flags) == ((None,) * 4, None, ())
    # onInvalidDataReceived: flags 0xFF in a 5-octet buffer.
    with pytest.raises(DecodeError) as exc:
        GlucoseContext.parse(bytes.fromhex("ff0000b303"))
    e = exc.value
    assert (e.source, e.field, e.offset, e.reason) == (
        "2a34",
        "carbohydrate",
        5,
        "truncated: needs 2 octet(s), 0 left",
    )


def test_context_reserved_names() -> None:
    ctx = GlucoseContext(2, carbohydrate_id=0, carbohydrate=D(1), meal=9, tester=0, health=14)
    ctx = dataclasses.replace(ctx, medication_id=6, medication=Special.NAN)
    assert (
        ctx.carbohydrate_name,
        ctx.meal_name,
        ctx.tester_name,
        ctx.health_name,
        ctx.medication_name,
    ) == ("reserved",) * 5
    assert GlucoseContext.parse(ctx.encode()) == ctx


def test_context_pairs() -> None:
    with pytest.raises(ValueError, match="tester and health go together"):
        GlucoseContext(1, tester=1)


def test_apply_context() -> None:
    m = decode_measurement(NORDIC)  # sequence 1
    ctx = GlucoseContext(1, meal=1, tester=1, health=5)
    same(
        apply_context(m, ctx),
        dataclasses.replace(
            m, flags=(*m.flags, "meal:preprandial", "tester:self", "health:no-health-issues")
        ),
    )
    with pytest.raises(ValueError, match="does not belong"):
        apply_context(m, GlucoseContext(2))
    with pytest.raises(ValueError, match="does not belong"):
        apply_context(dataclasses.replace(m, source="2a35"), ctx)


@st.composite
def contexts(draw: st.DrawFn) -> GlucoseContext:
    u8, u16 = st.integers(0, 255), st.integers(0, 0xFFFF)
    carb, tester, exercise, med = (draw(st.booleans()) for _ in range(4))
    return GlucoseContext(
        sequence_number=draw(u16),
        extended_flags=draw(st.none() | u8),
        carbohydrate_id=draw(u8) if carb else None,
        carbohydrate=draw(sfloats) if carb else None,
        meal=draw(st.none() | u8),
        tester=draw(st.integers(0, 15)) if tester else None,
        health=draw(st.integers(0, 15)) if tester else None,
        exercise_duration=draw(u16) if exercise else None,
        exercise_intensity=draw(u8) if exercise else None,
        medication_id=draw(u8) if med else None,
        medication=draw(sfloats) if med else None,
        medication_unit=draw(st.sampled_from(["kg", "L"])),
        hba1c=draw(st.none() | sfloats),
    )


@given(contexts())
def test_context_roundtrip(ctx: GlucoseContext) -> None:
    assert GlucoseContext.parse(ctx.encode()) == ctx


@given(st.binary(max_size=20))
def test_context_arbitrary_bytes(data: bytes) -> None:
    try:
        ctx = GlucoseContext.parse(data)
    except DecodeError:
        return
    assert ctx.encode() == data[: len(ctx.encode())]


# -- registry ----------------------------------------------------------------------------------
def test_registry_entries() -> None:
    (d,) = DRIVERS
    assert (d.key, d.decode, d.transport, d.kind) == ("2a18", decode_measurement, "ble", Kind.SPOT)
    assert d.characteristic == "00002a18-0000-1000-8000-00805f9b34fb"
    assert d.service == "00001808-0000-1000-8000-00805f9b34fb"
    assert (
        Parser(
            "2a34",
            "Glucose Measurement Context",
            GlucoseContext.parse,
            "00002a34-0000-1000-8000-00805f9b34fb",
        ),
    ) == PARSERS
