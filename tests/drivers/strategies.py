"""Hypothesis strategies and exact-comparison helpers shared by the GATT family tests."""

from __future__ import annotations

import calendar
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from drivers._cursor import Number
from drivers.ieee11073 import decode_float, decode_sfloat
from drivers.observation import DeviceTime, Special


def same(actual: Any, expected: Any) -> None:
    """Full structural equality, and the same Decimal precision (repr shows Decimal('2.0'))."""
    assert actual == expected
    assert repr(actual) == repr(expected)


def _number(pair: tuple[Decimal | None, Special | None]) -> Number:
    value, special = pair
    if special is not None:
        return special
    assert value is not None
    return value


#: Any SFLOAT / FLOAT field value a device can send (including the special values).
sfloats = st.integers(0, 0xFFFF).map(lambda w: _number(decode_sfloat(w)))
floats32 = st.integers(0, 0xFFFFFFFF).map(lambda w: _number(decode_float(w)))


@st.composite
def device_times(draw: st.DrawFn) -> DeviceTime:
    year = draw(st.one_of(st.just(0), st.integers(1582, 9999)))
    month = draw(st.integers(0, 12))
    max_day = calendar.monthrange(year, month)[1] if year and month else 31
    return DeviceTime(
        year,
        month,
        draw(st.integers(0, max_day)),
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )


def flag_subsets(names: dict[str, Any]) -> st.SearchStrategy[tuple[str, ...]]:
    """A tuple of flag names in table (bit) order, as decoders produce them."""
    ordered = sorted(names, key=lambda n: names[n] if isinstance(names[n], int) else names[n][0])
    return st.lists(st.booleans(), min_size=len(ordered), max_size=len(ordered)).map(
        lambda on: tuple(n for n, b in zip(ordered, on, strict=True) if b)
    )
