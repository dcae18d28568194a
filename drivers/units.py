"""The one place unit conversions happen (imperial and GATT units -> the canonical clinical unit).

Every conversion takes a :class:`Quantity` in the device's unit and returns
``(converted, original)``; the original is kept on the :class:`Observation` so nothing is lost.

Precision rule (exact Decimal arithmetic, one documented rounding step):

* The factors are exact definitions: 1 lb = 0.45359237 kg, 1 in = 0.0254 m,
  1 mmHg = 133.322387415 Pa, °C = (°F - 32) x 5/9, 1 kg/L = 100 000 mg/dL, 1 mol/L = 1 000 mmol/L.
* The source's resolution is its Decimal exponent (the quantum ``10**e``: 150.00 lb -> 0.01 lb,
  SFLOAT 16.0 kPa -> 0.1 kPa). The converted value is rounded (ROUND_HALF_EVEN) to the largest
  power of ten not coarser than the source quantum expressed in the target unit, i.e. to exponent
  ``e + floor(log10(factor))``: lb->kg ``e-1``, in->m ``e-2``, kPa->mm[Hg] ``e+0``,
  °F->Cel ``e-1``, kg/L->mg/dL ``e+5``, mol/L->mmol/L ``e+3``.
  So a conversion never loses the device's resolution and adds at most one digit
  (150.00 lb -> 68.039 kg, 70.0 in -> 1.778 m, 16.0 kPa -> 120.0 mm[Hg], 98.6 °F -> 37.00 Cel).
* The glucose rescalings are powers of ten: the result is exact (``scaleb``), never rounded
  (105E-5 kg/L -> 105 mg/dL, 58E-4 mol/L -> 5.8 mmol/L).
* Special values (NaN, NRes, ...) convert to the same special value in the target unit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from drivers import codes
from drivers.observation import Quantity, Special

LB_KG = Decimal("0.45359237")
IN_M = Decimal("0.0254")
MMHG_PA = Decimal("133.322387415")

Conversion = Callable[[Quantity], tuple[Quantity, Quantity]]


def quantity(value: Decimal | Special, unit: str) -> Quantity:
    """A Quantity in a UCUM unit (MDC unit code looked up), from a number or a special value."""
    mdc_unit = codes.MDC_UNIT[unit]
    if isinstance(value, Special):
        return Quantity(None, unit, mdc_unit, value)
    return Quantity(value, unit, mdc_unit)


def _convert(
    q: Quantity, source: str, target: str, shift: int, fn: Callable[[Decimal], Decimal]
) -> tuple[Quantity, Quantity]:
    if q.unit != source:
        raise ValueError(f"expected a quantity in {source}, got {q.unit}")
    if q.value is None:
        return Quantity(None, target, codes.MDC_UNIT[target], q.special), q
    exponent = q.value.as_tuple().exponent
    assert isinstance(exponent, int)  # decoders build finite Decimals only
    with localcontext() as ctx:
        # Enough digits for the exact result at the target exponent, however large or small the
        # source exponent (FLOAT allows 10**-128..10**127).
        ctx.prec = 40 + abs(exponent) + abs(q.value.adjusted())
        exact = fn(q.value)
        value = exact.quantize(Decimal(1).scaleb(exponent + shift), rounding=ROUND_HALF_EVEN)
    return Quantity(value, target, codes.MDC_UNIT[target]), q


def lb_to_kg(q: Quantity) -> tuple[Quantity, Quantity]:
    """[lb_av] -> kg (exponent - 1)."""
    return _convert(q, codes.UCUM_LB, codes.UCUM_KG, -1, lambda v: v * LB_KG)


def in_to_m(q: Quantity) -> tuple[Quantity, Quantity]:
    """[in_i] -> m (exponent - 2)."""
    return _convert(q, codes.UCUM_IN, codes.UCUM_M, -2, lambda v: v * IN_M)


def kpa_to_mmhg(q: Quantity) -> tuple[Quantity, Quantity]:
    """kPa -> mm[Hg] (same exponent): 1 kPa = 1000/133.322387415 mmHg."""
    return _convert(q, codes.UCUM_KPA, codes.UCUM_MMHG, 0, lambda v: v * 1000 / MMHG_PA)


def fahrenheit_to_celsius(q: Quantity) -> tuple[Quantity, Quantity]:
    """[degF] -> Cel (exponent - 1): (F - 32) * 5 / 9."""
    return _convert(q, codes.UCUM_DEGF, codes.UCUM_CEL, -1, lambda v: (v - 32) * 5 / 9)


def kg_per_l_to_mg_per_dl(q: Quantity) -> tuple[Quantity, Quantity]:
    """GATT glucose kg/L -> mg/dL: x 100 000, exact."""
    return _convert(q, codes.UCUM_KG_L, codes.UCUM_MG_DL, 5, lambda v: v.scaleb(5))


def mol_per_l_to_mmol_per_l(q: Quantity) -> tuple[Quantity, Quantity]:
    """GATT glucose mol/L -> mmol/L: x 1 000, exact."""
    return _convert(q, codes.UCUM_MOL_L, codes.UCUM_MMOL_L, 3, lambda v: v.scaleb(3))


#: Device unit -> its conversion to the canonical unit.
CONVERSIONS: dict[str, Conversion] = {
    codes.UCUM_LB: lb_to_kg,
    codes.UCUM_IN: in_to_m,
    codes.UCUM_KPA: kpa_to_mmhg,
    codes.UCUM_DEGF: fahrenheit_to_celsius,
    codes.UCUM_KG_L: kg_per_l_to_mg_per_dl,
    codes.UCUM_MOL_L: mol_per_l_to_mmol_per_l,
}


def canonical(q: Quantity) -> tuple[Quantity, Quantity | None]:
    """``q`` in its canonical unit, and the original if a conversion happened (else None)."""
    convert = CONVERSIONS.get(q.unit)
    if convert is None:
        return q, None
    return convert(q)
