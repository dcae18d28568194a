"""Pure validation/normalisation of one reading (no broker, no database)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from msgspec.structs import replace

from gateway.ingest.model import NormalizedReading, Reject
from gateway.ingest.validate import ParsedMessage, check_reading, parse_readings_message
from tests.gateway.ingest_support import HUB, NOW, message, reading

SKEW = timedelta(days=1)


def check(r: dict[str, Any]) -> NormalizedReading | Reject:
    return check_reading(msgspec.Raw(msgspec.json.encode(r)), HUB, now=NOW, max_future_skew=SKEW)


def base(r: dict[str, Any]) -> NormalizedReading:
    return NormalizedReading(
        time=datetime.fromisoformat(r["time"]), key=r["key"], patient_id="p1", hub_id=HUB,
        device_id="oxi-1", source="2a5e", kind="spot", mdc=r["mdc"], loinc=tuple(r["loinc"]),
        unit=r["unit"], mdc_unit=r["mdc_unit"], value=None, special=None, orig_value=None,
        orig_unit=None, panel=None, grp=r["group"], flags=(), time_source="device",
        device_time=r["device_time"], received_at=datetime.fromisoformat(r["received_at"]),
        hub_clock="synchronized", sequence=r["sequence"], user_id=None, raw=b"\x0a\x0b",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mdc", "unit", "mdc_unit", "value", "want_value", "want_unit", "want_mdc_unit"),
    [
        (150021, "kPa", 265987, "16.0", "120.0", "mm[Hg]", 266016),
        (150364, "[degF]", 266560, "98.6", "37.00", "Cel", 268192),
        (188736, "[lb_av]", 263904, "150.00", "68.039", "kg", 263875),
        (188740, "[in_i]", 263520, "70.0", "1.778", "m", 263424),
        (160184, "kg/L", 0, "0.00105", "105", "mg/dL", 264274),
        (160184, "mol/L", 266848, "0.0058", "5.8", "mmol/L", 266866),
    ],
)  # fmt: skip
def test_alternate_units_are_converted_with_drivers_units(
    mdc: int,
    unit: str,
    mdc_unit: int,
    value: str,
    want_value: str,
    want_unit: str,
    want_mdc_unit: int,
) -> None:
    r = reading(1, mdc=mdc, unit=unit, mdc_unit=mdc_unit, value=value, loinc=[])
    got = check(r)
    assert got == replace(
        base(r),
        mdc=mdc,
        unit=want_unit,
        mdc_unit=want_mdc_unit,
        value=Decimal(want_value),
        orig_value=Decimal(value),
        orig_unit=unit,
    )
    assert isinstance(got, NormalizedReading) and str(got.value) == want_value


def test_original_from_the_edge_is_kept() -> None:
    r = reading(
        1,
        mdc=188736,
        unit="kg",
        mdc_unit=263875,
        value="68.039",
        orig_value="150.00",
        orig_unit="[lb_av]",
        loinc=[],
    )
    assert check(r) == replace(
        base(r), value=Decimal("68.039"), orig_value=Decimal("150.00"), orig_unit="[lb_av]"
    )


def test_special_value_in_alternate_unit_is_stored_in_the_canonical_unit() -> None:
    r = reading(
        1, mdc=188736, unit="[lb_av]", mdc_unit=263904, value=None, special="unsuccessful", loinc=[]
    )
    assert check(r) == replace(base(r), unit="kg", mdc_unit=263875, special="unsuccessful")


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"value": "0"}, None), ({"value": "100"}, None), ({"value": "100.1"}, "range"),
        ({"value": "-0.1"}, "range"), ({"value": "1E+50"}, "value"),
        ({"special": "weird", "value": None}, "special"),
        ({"time": (NOW + timedelta(hours=23)).isoformat()}, None),
        ({"time": (NOW + timedelta(hours=25)).isoformat()}, "time"),
        ({"key": ""}, "key"), ({"key": "k" * 129}, "key"), ({"sequence": 2**31}, "int-range"),
    ],
)  # fmt: skip
def test_boundaries(over: dict[str, Any], reason: str | None) -> None:
    got = check(reading(1, **over))
    if reason is None:
        assert isinstance(got, NormalizedReading)
    else:
        assert isinstance(got, Reject) and got.code == reason


def test_valid_message_keeps_each_reading_raw_for_separate_checks() -> None:
    mid, payload = message([b"{}", reading(1)])
    parsed = parse_readings_message(HUB, payload)
    assert isinstance(parsed, ParsedMessage)
    assert (parsed.hub, parsed.msg_id, [bytes(r) for r in parsed.readings]) == (
        HUB,
        mid,
        [b"{}", msgspec.json.encode(reading(1))],
    )
    bad = check_reading(parsed.readings[0], HUB, now=NOW, max_future_skew=SKEW)
    assert bad == Reject(
        "reading-schema", "reading: Object missing required field 'key'", None, b"{}"
    )
