"""IEEE 11073-20601 SFLOAT (16 bit) and FLOAT (32 bit), exact, with every special value.

``value = mantissa * 10**exponent``; the result is a :class:`~decimal.Decimal` built from the
mantissa and exponent, so the precision the device encoded is kept: 0x0002 -> ``2``,
0xF014 -> ``2.0``, 0xE0C8 -> ``2.00`` (HL7 PHD IG, FLOATS.md). Special values are whole code words
(exponent 0); 0xF7FF is the ordinary number 204.7, not NaN.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from drivers.observation import Special

SFLOAT_SPECIALS: Final[dict[int, Special]] = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POS_INF,
    0x0802: Special.NEG_INF,
    0x0801: Special.RESERVED,
}
FLOAT_SPECIALS: Final[dict[int, Special]] = {
    0x007FFFFF: Special.NAN,
    0x00800000: Special.NRES,
    0x007FFFFE: Special.POS_INF,
    0x00800002: Special.NEG_INF,
    0x00800001: Special.RESERVED,
}
_SFLOAT_CODES: Final = {v: k for k, v in SFLOAT_SPECIALS.items()}
_FLOAT_CODES: Final = {v: k for k, v in FLOAT_SPECIALS.items()}

#: A decoded number: exactly one of the two is not None.
Number = tuple[Decimal | None, Special | None]


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def decode_sfloat(word: int) -> Number:
    """Decode a 16-bit SFLOAT word (already assembled from its little-endian octets)."""
    special = SFLOAT_SPECIALS.get(word)
    if special is not None:
        return None, special
    exponent = _signed(word >> 12, 4)
    mantissa = _signed(word & 0x0FFF, 12)
    return Decimal(mantissa).scaleb(exponent), None


def decode_float(word: int) -> Number:
    """Decode a 32-bit FLOAT word (already assembled from its little-endian octets)."""
    special = FLOAT_SPECIALS.get(word)
    if special is not None:
        return None, special
    exponent = _signed(word >> 24, 8)
    mantissa = _signed(word & 0x00FFFFFF, 24)
    return Decimal(mantissa).scaleb(exponent), None


def _split(value: Decimal, mant_bits: int, exp_bits: int) -> tuple[int, int]:
    """Mantissa and exponent that represent ``value`` exactly, keeping its precision if possible."""
    sign, digits, exp = value.as_tuple()
    if not isinstance(exp, int):
        raise ValueError(f"{value} is not a finite number")
    mantissa = int("".join(map(str, digits)) or "0")
    exponent = exp
    # Two's complement: the negative range reaches one further (-2048 for SFLOAT).
    mant_max = (1 << (mant_bits - 1)) - (0 if sign else 1)
    exp_min, exp_max = -(1 << (exp_bits - 1)), (1 << (exp_bits - 1)) - 1
    # Too many digits: drop trailing zeros only (never round: a value we cannot send exactly is an
    # error, not a silently different reading).
    while mantissa > mant_max or exponent < exp_min:
        if mantissa % 10 != 0:
            raise ValueError(f"{value} cannot be represented exactly")
        mantissa //= 10
        exponent += 1
    while exponent > exp_max:
        if mantissa * 10 > mant_max:
            raise ValueError(f"{value} is out of range")
        mantissa *= 10
        exponent -= 1
    return (-mantissa if sign else mantissa), exponent


def encode_sfloat(value: Decimal | Special) -> int:
    """The SFLOAT word for an exact value or a special value (inverse of :func:`decode_sfloat`)."""
    if isinstance(value, Special):
        if value not in _SFLOAT_CODES:
            raise ValueError(f"{value} has no SFLOAT code")
        return _SFLOAT_CODES[value]
    mantissa, exponent = _split(value, 12, 4)
    word = ((exponent & 0xF) << 12) | (mantissa & 0x0FFF)
    if word in SFLOAT_SPECIALS:
        raise ValueError(f"{value} collides with a special SFLOAT code")
    return word


def encode_float(value: Decimal | Special) -> int:
    """The FLOAT word for an exact value or a special value (inverse of :func:`decode_float`)."""
    if isinstance(value, Special):
        if value not in _FLOAT_CODES:
            raise ValueError(f"{value} has no FLOAT code")
        return _FLOAT_CODES[value]
    mantissa, exponent = _split(value, 24, 8)
    word = ((exponent & 0xFF) << 24) | (mantissa & 0x00FFFFFF)
    if word in FLOAT_SPECIALS:
        raise ValueError(f"{value} collides with a special FLOAT code")
    return word
