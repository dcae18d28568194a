"""Temperature Measurement 0x2A1C, Intermediate Temperature 0x2A1E, Temperature Type 0x2A1D."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special
from drivers.thermometer import (
    IntermediateTemperatureRecord,
    TemperatureRecord,
    TemperatureType,
    decode_intermediate,
    decode_temperature,
    site_metric,
    type_name,
)
from tests.drivers.fuzz_support import check_arbitrary
from tests.drivers.strategies import device_times, floats32, same

CEL = ("Cel", codes.MDC_DIM_DEGC)
DEGF = ("[degF]", codes.MDC_DIM_FAHR)


def q(value: str | Special, unit: tuple[str, int]) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit[0], unit[1], value)
    return Quantity(D(value), unit[0], unit[1])


def temp(metric: int, value: Quantity, original: Quantity | None = None) -> Observation:
    return Observation(metric, value, ("8310-5",), original)


# Nordic Android-BLE-Common-Library TemperatureMeasurementDataCallbackTest
# .onTemperatureMeasurementReceived: 37.60 °C (FLOAT 0xFE000EB0), 2012-12-05 11:50:27, finger.
NORDIC = bytes([0x06, 0xB0, 0x0E, 0x00, 0xFE, 0xDC, 0x07, 0x0C, 0x05, 0x0B, 0x32, 0x1B, 0x04])


def test_nordic_vector() -> None:
    same(
        decode_temperature(NORDIC),
        Measurement(
            source="2a1c",
            raw=NORDIC,
            observations=(temp(codes.MDC_TEMP_FINGER, q("37.60", CEL)),),
            kind=Kind.SPOT,
            timestamp=DeviceTime(2012, 12, 5, 11, 50, 27),
        ),
    )
    same(
        TemperatureRecord.parse(NORDIC),
        TemperatureRecord(False, D("37.60"), DeviceTime(2012, 12, 5, 11, 50, 27), 4),
    )
    # ...onInvalidDataReceived: the same value without its announced Temperature Type octet.
    with pytest.raises(DecodeError) as err:
        decode_temperature(NORDIC[:-1])
    assert (err.value.field, err.value.offset) == ("temperature type", 12)


def test_fahrenheit_converted_with_original() -> None:
    # flags 0x01; 98.6 °F = FLOAT mantissa 986, exponent -1 -> 37.00 Cel (rounded at 0.01).
    data = bytes.fromhex("01 da0300ff".replace(" ", ""))
    same(
        decode_temperature(data),
        Measurement(
            source="2a1c",
            raw=data,
            observations=(temp(codes.MDC_TEMP_BODY, q("37.00", CEL), q("98.6", DEGF)),),
        ),
    )


@pytest.mark.parametrize(
    ("ttype", "metric"),
    [
        (1, codes.MDC_TEMP_AXILLA),
        (2, codes.MDC_TEMP_BODY),
        (3, codes.MDC_TEMP_EAR),
        (5, codes.MDC_TEMP_GIT),
        (6, codes.MDC_TEMP_ORAL),
        (7, codes.MDC_TEMP_RECT),
        (8, codes.MDC_TEMP_TOE),
        (9, codes.MDC_TEMP_TYMP),
    ],
)
def test_type_selects_site_code(ttype: int, metric: int) -> None:
    data = bytes([0x04]) + bytes.fromhex("720100ff") + bytes([ttype])  # 37.0 °C
    assert decode_temperature(data).observations == (temp(metric, q("37.0", CEL)),)


@pytest.mark.parametrize("ttype", [0, 10, 255])
def test_reserved_type_is_decoded_as_reserved(ttype: int) -> None:
    data = bytes([0xFC]) + bytes.fromhex("720100ff") + bytes([ttype]) + b"\x99"  # RFU flags set
    same(
        decode_temperature(data),
        Measurement(
            source="2a1c",
            raw=data,
            observations=(temp(codes.MDC_TEMP_BODY, q("37.0", CEL)),),
            flags=("temperature-type:reserved", "trailing-octets:1"),
        ),
    )
    assert type_name(ttype) == "reserved"
    assert site_metric(ttype) == codes.MDC_TEMP_BODY


def test_special_values_and_intermediate() -> None:
    data = bytes.fromhex("01 ffff7f00".replace(" ", ""))  # FLOAT NaN in °F
    same(
        decode_intermediate(data),
        Measurement(
            source="2a1e",
            raw=data,
            observations=(temp(codes.MDC_TEMP_BODY, q(Special.NAN, CEL), q(Special.NAN, DEGF)),),
            kind=Kind.INTERMEDIATE,
        ),
    )
    same(
        IntermediateTemperatureRecord.parse(data),
        IntermediateTemperatureRecord(True, Special.NAN),
    )


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        ("", "flags", 0),
        ("00 720100", "temperature", 1),
        ("02 720100ff dc07", "time stamp", 5),
        ("02 720100ff dc070c050b3c1b", "time stamp.minutes", 10),
        ("04 720100ff", "temperature type", 5),
    ],
)
def test_decode_errors(data: str, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as err:
        decode_temperature(bytes.fromhex(data.replace(" ", "")))
    assert (err.value.source, err.value.field, err.value.offset) == ("2a1c", field, offset)
    with pytest.raises(DecodeError) as err2:
        decode_intermediate(bytes.fromhex(data.replace(" ", "")))
    assert err2.value.source == "2a1e"


def test_temperature_type_characteristic() -> None:
    # Nordic TemperatureTypeDataCallbackTest reads a single octet; 3 = ear.
    assert TemperatureType.parse(b"\x03") == TemperatureType(3)
    assert TemperatureType.parse(b"\x03").name == "ear"
    assert TemperatureType.parse(b"\x0a").name == "reserved"
    assert TemperatureType(9).encode() == b"\x09"
    with pytest.raises(DecodeError, match="2a1d: temperature type at offset 0: truncated"):
        TemperatureType.parse(b"")


records = st.builds(
    TemperatureRecord,
    st.booleans(),
    floats32,
    st.none() | device_times(),
    st.none() | st.integers(0, 255),
)


@given(records)
def test_record_roundtrip(rec: TemperatureRecord) -> None:
    assert TemperatureRecord.parse(rec.encode()) == rec


@given(st.binary(max_size=24))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for fn in (decode_temperature, decode_intermediate, TemperatureType.parse):
        check_arbitrary(fn, data)
