"""The registry: keys, UUID forms, advertisement/USB matching, decode, and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import (
    blood_pressure,
    body_composition,
    pulse_oximeter,
    registry,
    thermometer,
    uuids,
    weight,
)
from drivers.catalog import Registry
from drivers.driver import Driver, Parser, SerialParams
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement

MINE = (weight, body_composition, blood_pressure, pulse_oximeter, thermometer)
MY_KEYS = ("2a9d", "2a9c", "2a35", "2a36", "2a5e", "2a5f", "2a1c", "2a1e")
MY_PARSERS = ("2a9e", "2a9b", "2a49", "2a60", "2a1d")


def test_family_modules_in_the_registry_in_order() -> None:
    assert registry.FAMILIES[:5] == MINE
    keys = [d.key for d in registry.all_drivers()]
    assert keys[: len(MY_KEYS)] == list(MY_KEYS)
    assert {p.key for p in registry.all_parsers()} >= {*MY_PARSERS, "2a2b"}


@pytest.mark.parametrize(
    "form",
    [
        "2a35",
        "2A35",
        "0x2A35",
        " 0x2a35 ",
        "00002a35",
        "00002A35-0000-1000-8000-00805F9B34FB",
        "00002a35-0000-1000-8000-00805f9b34fb",
    ],
)
def test_get_accepts_every_uuid_form(form: str) -> None:
    assert registry.get(form) is blood_pressure.DRIVERS[0]
    assert registry.by_characteristic(form) is blood_pressure.DRIVERS[0]


def test_get_unknown_key_has_a_helpful_message() -> None:
    with pytest.raises(KeyError, match=r"no driver or parser for '2a3x'.*did you mean.*2a35"):
        registry.get("2a3x")
    with pytest.raises(KeyError, match=r"no driver or parser for 'nothing' \(`telehub"):
        registry.get("nothing")
    with pytest.raises(KeyError, match="is not a measurement"):
        registry.get("0x2A49")
    with pytest.raises(KeyError, match="is a measurement driver, not a parser"):
        registry.parser("2a35")
    assert registry.parser("2a49").parse(b"\x01\x00") == blood_pressure.BloodPressureFeature(True)
    assert registry.parser("2a2b").key == "2a2b"


def test_by_characteristic_unknown_or_malformed() -> None:
    assert registry.by_characteristic("2aff") is None
    assert registry.by_characteristic("not a uuid") is None
    assert registry.by_characteristic("0x2A49") is None  # a parser, not a measurement driver


def test_match_advertisement_by_service() -> None:
    bps = [d.key for d in registry.match_advertisement("A&D_UA-651_1234", ["1810"])]
    assert bps == ["2a35", "2a36"]
    got = registry.match_advertisement(None, ["0000181d-0000-1000-8000-00805f9b34fb", "zz"])
    assert [d.key for d in got] == ["2a9d"]
    assert registry.match_advertisement(None, []) == []
    assert [d.key for d in registry.match_advertisement("x", ["0x1822", "0x1809"])] == [
        "2a5e",
        "2a5f",
        "2a1c",
        "2a1e",
    ]


def _decode(data: bytes) -> Measurement:
    return Measurement(source="vendor", raw=data, observations=())


VENDOR = Driver(
    key="vendor",
    name="Vendor oximeter",
    decode=_decode,
    transport="serial",
    kind=Kind.CONTINUOUS,
    name_patterns=(r"^OXI-\d+$",),
    usb_ids=((0x10C4, 0xEA60),),
    serial=SerialParams(19200, parity="O"),
)


def test_catalog_name_patterns_usb_and_decode() -> None:
    reg = Registry([*weight.DRIVERS, VENDOR], [*weight.PARSERS])
    assert reg.match_advertisement("oxi-42", []) == [VENDOR]  # case-insensitive
    assert reg.match_advertisement("OXI-42x", []) == []
    assert reg.match_usb(0x10C4, 0xEA60) == [VENDOR]
    assert reg.match_usb(0x10C4, 0x0001) == []
    assert reg.decode("vendor", b"\x01") == _decode(b"\x01")
    assert reg.decode("0x2a9d", bytes.fromhex("000000")).source == "2a9d"
    assert reg.all_drivers() == (*weight.DRIVERS, VENDOR)
    assert reg.all_parsers() == weight.PARSERS


def test_catalog_rejects_duplicate_keys() -> None:
    with pytest.raises(ValueError, match="duplicate registry key '2a9d'"):
        Registry([*weight.DRIVERS, *weight.DRIVERS])
    with pytest.raises(ValueError, match="duplicate registry key '2a9e'"):
        Registry(weight.DRIVERS, [*weight.PARSERS, Parser("2a9e", "again", bytes)])


def test_catalog_from_modules_without_drivers_or_parsers() -> None:
    reg = Registry.from_modules([uuids, weight])  # uuids has neither DRIVERS nor PARSERS
    assert [d.key for d in reg.all_drivers()] == ["2a9d"]


def test_registry_decode() -> None:
    m = registry.decode("0x2A35", bytes.fromhex("00bdf00b009ff0"))
    assert m == blood_pressure.decode_bpm(bytes.fromhex("00bdf00b009ff0"))
    with pytest.raises(DecodeError):
        registry.decode("2a35", b"")
    assert registry.match_usb(0xFFFF, 0xFFFF) == []


def test_uuids() -> None:
    assert uuids.uuid16(0x2A35) == "00002a35-0000-1000-8000-00805f9b34fb"
    assert uuids.normalize("0x2A35") == uuids.uuid16(0x2A35)
    assert uuids.normalize("ECBE3980-C9A2-11E1-B1BD-0002A5D5C51B") == (
        "ecbe3980-c9a2-11e1-b1bd-0002a5d5c51b"
    )
    assert uuids.short("0x2A35") == "2a35"
    assert uuids.short("ecbe3980-c9a2-11e1-b1bd-0002a5d5c51b") is None
    with pytest.raises(ValueError):
        uuids.normalize("zz2a")
    with pytest.raises(ValueError):
        uuids.normalize("1234-5678")


def test_driver_entries_are_consistent() -> None:
    for d in registry.all_drivers():
        if d.characteristic is not None:
            assert d.characteristic == uuids.normalize(d.characteristic)
        short = uuids.short(d.characteristic or "0xffff")
        # SIG-assigned characteristics (0x2Axx) are keyed by their 16-bit UUID; vendor 16-bit
        # UUIDs (Contec's 0xFF02) by a protocol name.
        if short is not None and short.startswith("2a"):
            assert d.key == short
        elif short is not None:
            assert d.key != short


@settings(max_examples=300)
@given(st.sampled_from(MY_KEYS + MY_PARSERS), st.binary(max_size=48))
def test_my_registry_entries_raise_only_decode_error(key: str, data: bytes) -> None:
    try:
        if key in MY_KEYS:
            m = registry.decode(key, data)
            assert m.source == key and m.raw == data
        else:
            registry.parser(key).parse(data)
    except DecodeError as err:
        assert err.source == key
        assert 0 <= err.offset <= len(data)
