"""drivers.units: exact conversions with the documented precision rule; drivers._cursor helpers."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import _cursor as c
from drivers import codes, units
from drivers._cursor import Cursor, bit_names, names_to_bits
from drivers._obs import observation, user
from drivers.errors import DecodeError
from drivers.observation import Observation, Quantity, Special


def q(value: str, unit: str) -> Quantity:
    return units.quantity(D(value), unit)


@pytest.mark.parametrize(
    ("fn", "src", "unit", "expected"),
    [
        (units.lb_to_kg, "150.00", "[lb_av]", "68.039"),  # 68.0388555
        (units.lb_to_kg, "1", "[lb_av]", "0.5"),  # 0.45359237 -> quantum 0.1
        (units.lb_to_kg, "0.00", "[lb_av]", "0.000"),
        (units.in_to_m, "70.0", "[in_i]", "1.778"),
        (units.in_to_m, "1", "[in_i]", "0.03"),  # 0.0254 -> quantum 0.01
        (units.kpa_to_mmhg, "16.0", "kPa", "120.0"),  # 120.0098...
        (units.kpa_to_mmhg, "18.9", "kPa", "141.8"),
        (units.kpa_to_mmhg, "12E+1", "kPa", "9.0E+2"),
        (units.fahrenheit_to_celsius, "98.6", "[degF]", "37.00"),
        (units.fahrenheit_to_celsius, "-40", "[degF]", "-40.0"),
        (units.fahrenheit_to_celsius, "32.0", "[degF]", "0.00"),
        (units.kg_per_l_to_mg_per_dl, "105E-5", "kg/L", "105"),  # reference §5.2
        (units.kg_per_l_to_mg_per_dl, "30", "kg/L", "3.0E+6"),  # Nordic's synthetic 30 kg/L
        (units.mol_per_l_to_mmol_per_l, "58E-4", "mol/L", "5.8"),  # reference §5.2
    ],
)
def test_conversions(fn: units.Conversion, src: str, unit: str, expected: str) -> None:
    converted, original = fn(q(src, unit))
    assert str(converted.value) == expected
    assert original == q(src, unit)
    assert converted.mdc_unit == codes.MDC_UNIT[converted.unit]


def test_half_even_rounding() -> None:
    # 0.5 lb = 0.226796185 kg -> quantum 0.01 -> 0.23; 2.5 °F = -16.3888.. °C -> -16.39.
    assert units.lb_to_kg(q("0.5", "[lb_av]"))[0].value == D("0.23")
    assert units.fahrenheit_to_celsius(q("2.5", "[degF]"))[0].value == D("-16.39")


def test_special_values_convert_to_the_same_special() -> None:
    nan = units.quantity(Special.NAN, "kPa")
    assert units.kpa_to_mmhg(nan) == (
        Quantity(None, "mm[Hg]", codes.MDC_DIM_MMHG, Special.NAN),
        nan,
    )


def test_wrong_unit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"expected a quantity in \[lb_av\], got kg"):
        units.lb_to_kg(q("1", "kg"))
    with pytest.raises(KeyError):
        units.quantity(D(1), "furlong")


def test_canonical() -> None:
    assert units.canonical(q("70.000", "kg")) == (q("70.000", "kg"), None)
    assert units.canonical(q("1", "[lb_av]")) == units.lb_to_kg(q("1", "[lb_av]"))


def test_extreme_float_exponents_do_not_raise() -> None:
    # FLOAT allows 10**-128 .. 10**127: the context precision follows the exponent.
    tiny = units.fahrenheit_to_celsius(units.quantity(D(1).scaleb(-128), "[degF]"))[0].value
    assert tiny is not None and tiny.as_tuple().exponent == -129
    huge = units.fahrenheit_to_celsius(units.quantity(D(8388605).scaleb(127), "[degF]"))[0]
    assert huge.value == D("4.6603361E+133")


@given(st.integers(-2048, 2047), st.integers(-8, 7))
def test_conversion_never_loses_resolution(mantissa: int, exponent: int) -> None:
    src = D(mantissa).scaleb(exponent)
    for fn, unit, factor in (
        (units.lb_to_kg, "[lb_av]", units.LB_KG),
        (units.in_to_m, "[in_i]", units.IN_M),
    ):
        out = fn(units.quantity(src, unit))[0].value
        assert out is not None
        exact = src * factor
        # rounded at a quantum no coarser than the source's, half-even
        assert abs(out - exact) <= D(1).scaleb(exponent) * factor / 2


def test_observation_helper_and_user() -> None:
    assert observation(codes.MDC_PULS_RATE_NON_INV, D(60), "/min", panel=1, flags=["a"]) == (
        Observation(
            codes.MDC_PULS_RATE_NON_INV,
            q("60", "/min"),
            ("8867-4",),
            None,
            1,
            ("a",),
        )
    )
    assert (user(None), user(0xFF), user(0), user(254)) == (None, 0xFF, 0, 254)
    assert codes.loinc(12345) == ()
    assert codes.mdc(codes.PART_SCADA, 18949) == codes.MDC_PRESS_BLD_NONINV_SYS


def test_cursor() -> None:
    cur = Cursor(bytes.fromhex("01 0203 040506 0708090a fffe 070801 ff"), "src")
    assert [cur.u8("a"), cur.u16("b"), cur.u24("c"), cur.u32("d"), cur.s16("e")] == [
        1,
        0x0302,
        0x060504,
        0x0A090807,
        -257,
    ]
    assert cur.uint(2, "be", big_endian=True) == 0x0708
    assert cur.remaining == 2
    with pytest.raises(DecodeError) as err:
        cur.u24("f")
    assert (err.value.field, err.value.offset, err.value.reason) == (
        "f",
        14,
        "truncated: needs 3 octet(s), 2 left",
    )
    assert cur.error("g", "why", 2).offset == 2
    table = {"x": 0, "y": 3}
    assert bit_names(0b1001, table) == ("x", "y")
    assert names_to_bits(("y",), table) == 8
    assert Cursor(c.s16(-257) + c.u24(0x060504), "s").s16("x") == -257
