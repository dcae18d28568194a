"""IEEE 11073-20601 SFLOAT/FLOAT: precision, every special value, exact round trips."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ieee11073 import (
    FLOAT_SPECIALS,
    SFLOAT_SPECIALS,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)
from drivers.observation import Special


# HL7/phd input/pagecontent/FLOATS.md: the exponent's precision is kept (2, 2.0, 2.00).
@pytest.mark.parametrize(
    ("word", "text"),
    [
        (0x0002, "2"),
        (0xF014, "2.0"),
        (0xE0C8, "2.00"),
        (0xF7FF, "204.7"),  # exponent -1, mantissa 2047: an ordinary number, not NaN
        (0x0FFF, "-1"),
        (0x0801 + 0x1000, "-2.047E+4"),
        (0x1800, "-2.048E+4"),  # mantissa -2048 with a non-zero exponent is a number
        (0x8062, "9.8E-7"),  # 98 x 10^-8: the exponent nibble 8 is -8, not a bias (ref §1.1)
        (0x7001, "1E+7"),
    ],
)
def test_sfloat_precision(word: int, text: str) -> None:
    value, special = decode_sfloat(word)
    assert special is None and value is not None
    assert str(value) == text
    assert encode_sfloat(value) == word


@pytest.mark.parametrize(
    ("word", "special"),
    [
        (0x07FF, Special.NAN),
        (0x0800, Special.NRES),
        (0x07FE, Special.POS_INF),
        (0x0802, Special.NEG_INF),
        (0x0801, Special.RESERVED),
    ],
)
def test_sfloat_specials_are_whole_words(word: int, special: Special) -> None:
    assert decode_sfloat(word) == (None, special)
    assert encode_sfloat(special) == word
    assert decode_sfloat(word | 0x1000) != (None, special)  # same mantissa, exponent 1: a number


@pytest.mark.parametrize(
    ("word", "special"),
    [
        (0x007FFFFF, Special.NAN),
        (0x00800000, Special.NRES),
        (0x007FFFFE, Special.POS_INF),
        (0x00800002, Special.NEG_INF),
        (0x00800001, Special.RESERVED),
    ],
)
def test_float_specials(word: int, special: Special) -> None:
    assert decode_float(word) == (None, special)
    assert encode_float(special) == word


def test_float_precision() -> None:
    # Nordic TemperatureMeasurementDataCallbackTest: 0xFE000EB0 = 3760 x 10^-2 = 37.60.
    value, _ = decode_float(0xFE000EB0)
    assert str(value) == "37.60"
    assert encode_float(D("37.60")) == 0xFE000EB0
    assert str(decode_float(0x80000001)[0]) == "1E-128"


def test_encode_errors() -> None:
    with pytest.raises(ValueError, match="has no SFLOAT code"):
        encode_sfloat(Special.UNSUCCESSFUL)
    with pytest.raises(ValueError, match="has no FLOAT code"):
        encode_float(Special.MISSING)
    with pytest.raises(ValueError, match="cannot be represented exactly"):
        encode_sfloat(D("2049"))
    with pytest.raises(ValueError, match="out of range"):
        encode_sfloat(D("1E+20"))
    with pytest.raises(ValueError, match="not a finite number"):
        encode_sfloat(D("NaN"))
    with pytest.raises(ValueError, match="collides with a special SFLOAT code"):
        encode_sfloat(D(2047))
    with pytest.raises(ValueError, match="collides with a special FLOAT code"):
        encode_float(D(8388607))
    assert encode_sfloat(D("20000")) == 0x17D0  # trailing zero dropped: 2000 x 10^1
    assert encode_sfloat(D("1E+8")) == 0x700A  # exponent too big: 10 x 10^7


@given(st.integers(0, 0xFFFF))
def test_sfloat_word_roundtrip(word: int) -> None:
    value, special = decode_sfloat(word)
    assert encode_sfloat(special if special is not None else value) == word  # type: ignore[arg-type]
    assert (word in SFLOAT_SPECIALS) == (special is not None)


@given(st.integers(0, 0xFFFFFFFF))
def test_float_word_roundtrip(word: int) -> None:
    value, special = decode_float(word)
    assert encode_float(special if special is not None else value) == word  # type: ignore[arg-type]
    assert (word in FLOAT_SPECIALS) == (special is not None)
