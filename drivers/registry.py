"""THE registry: every family module, explicitly, and lookups over their drivers and parsers.

Adding a device = one family module exporting ``DRIVERS`` (and/or ``PARSERS``) + one entry in
:data:`FAMILIES`. Lookups accept registry keys ("2a35", "nonin-df2"), 16-bit UUIDs ("0x2A35") and
full 128-bit UUIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from drivers import (
    battery,
    blood_pressure,
    body_composition,
    contec,
    contec_bt,
    glucose,
    heart_rate,
    jumper,
    nonin,
    primitives,
    pulse_oximeter,
    racp,
    thermometer,
    weight,
)
from drivers.catalog import Registry
from drivers.driver import Driver, Parser
from drivers.gatt_time import decode_current_time
from drivers.observation import Measurement
from drivers.uuids import uuid16

FAMILIES: tuple[ModuleType, ...] = (
    weight,
    body_composition,
    blood_pressure,
    pulse_oximeter,
    thermometer,
    glucose,
    racp,
    heart_rate,
    battery,
    nonin,
    contec,
    contec_bt,
    jumper,
    primitives,
)

#: Characteristics with no family module of their own.
EXTRA_PARSERS: tuple[Parser, ...] = (
    Parser("2a2b", "Current Time", decode_current_time, uuid16(0x2A2B)),
)

REGISTRY = Registry.from_modules(FAMILIES, EXTRA_PARSERS)


def get(key: str) -> Driver:
    """The driver for a key or characteristic UUID; KeyError (with suggestions) if none."""
    return REGISTRY.get(key)


def parser(key: str) -> Parser:
    """The non-measurement parser (features, control points, time) for a key or UUID."""
    return REGISTRY.parser(key)


def by_characteristic(uuid_any_form: str) -> Driver | None:
    return REGISTRY.by_characteristic(uuid_any_form)


def match_advertisement(name: str | None, service_uuids: Sequence[str]) -> list[Driver]:
    return REGISTRY.match_advertisement(name, service_uuids)


def match_usb(vid: int, pid: int) -> list[Driver]:
    return REGISTRY.match_usb(vid, pid)


def all_drivers() -> tuple[Driver, ...]:
    return REGISTRY.all_drivers()


def all_parsers() -> tuple[Parser, ...]:
    return REGISTRY.all_parsers()


def decode(key_or_uuid: str, data: bytes) -> Measurement:
    """Decode one record (raises DecodeError for bad bytes, KeyError for an unknown key)."""
    return REGISTRY.decode(key_or_uuid, data)
