"""What the gateway accepts per MDC metric: the canonical UCUM unit(s) and a plausibility range.

A reading's unit must be one of its metric's canonical units, or an alternate unit that
:mod:`drivers.units` converts to one of them (the one place conversions happen):
``[lb_av]``→``kg``, ``[in_i]``→``m``, ``kPa``→``mm[Hg]``, ``[degF]``→``Cel``,
``kg/L``→``mg/dL``, ``mol/L``→``mmol/L``. The value, in the canonical unit, must lie within the
plausibility range (inclusive). The ranges reject device and transcoding errors (a scale that
reports 3 000 000 mg/dL glucose — reference §8.13, a wrong SFLOAT exponent), not abnormal
physiology: anything a living patient can show is inside them.

=================================  ==========  ============  =================
metric (MDC)                       code        unit          plausible range
=================================  ==========  ============  =================
body weight                        188736      kg            0.5 to 400
body height                        188740      m             0.3 to 2.6
BMI                                188752      kg/m2         5 to 150
body fat                           188748      %             0 to 100
fat-free / soft lean / muscle mass 188756/60/76 kg           0.5 to 400
body water (mass)                  188764      kg            0.5 to 400
basal metabolism                   188768      kJ            100 to 50 000
muscle percentage                  188772      %             0 to 100
impedance                          188780      Ohm           0 to 10 000
systolic BP                        150021      mm[Hg]        20 to 300
diastolic BP                       150022      mm[Hg]        10 to 250
mean arterial pressure             150023      mm[Hg]        10 to 300
pulse rate (cuff, oximeter, ECG)   149546/149530/147842  /min  20 to 300
SpO2                               150456      %             0 to 100
pulse amplitude index / quality    150448/150320  %          0 to 100
body temperature (every site)      150364 ...  Cel           25 to 45
glucose (every sample type)        160020 ...  mg/dL         10 to 1000
                                               mmol/L        0.5 to 55.5
battery level                      67996       %             0 to 100
=================================  ==========  ============  =================

Glucose has two canonical units because mg/dL ↔ mmol/L depends on the molar mass and is not a
unit conversion in :mod:`drivers.units`; a rule in one of them does not apply to readings in the
other (counted as skipped, see :mod:`gateway.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from drivers import codes, units
from drivers.observation import Quantity


@dataclass(frozen=True, slots=True)
class UnitRange:
    unit: str  # canonical UCUM unit
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class Metric:
    mdc: int
    name: str
    ranges: tuple[UnitRange, ...]  # one per accepted canonical unit

    def range_for(self, unit: str) -> UnitRange | None:
        for r in self.ranges:
            if r.unit == unit:
                return r
        return None

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(r.unit for r in self.ranges)


def _m(mdc: int, name: str, *ranges: tuple[str, str, str]) -> Metric:
    return Metric(mdc, name, tuple(UnitRange(u, Decimal(lo), Decimal(hi)) for u, lo, hi in ranges))


_KG_MASS = (codes.UCUM_KG, "0.5", "400")
_PERCENT = (codes.UCUM_PERCENT, "0", "100")
_PULSE = (codes.UCUM_PER_MIN, "20", "300")
_TEMP = (codes.UCUM_CEL, "25", "45")
_GLUCOSE = ((codes.UCUM_MG_DL, "10", "1000"), (codes.UCUM_MMOL_L, "0.5", "55.5"))

_METRICS = [
    _m(codes.MDC_MASS_BODY_ACTUAL, "body weight", _KG_MASS),
    _m(codes.MDC_LEN_BODY_ACTUAL, "body height", (codes.UCUM_M, "0.3", "2.6")),
    _m(codes.MDC_RATIO_MASS_BODY_LEN_SQ, "BMI", (codes.UCUM_BMI, "5", "150")),
    _m(codes.MDC_BODY_FAT, "body fat", _PERCENT),
    _m(codes.MDC_MASS_BODY_FAT_FREE, "fat-free mass", _KG_MASS),
    _m(codes.MDC_MASS_BODY_SOFT_LEAN, "soft lean mass", _KG_MASS),
    _m(codes.MDC_BODY_WATER, "body water", _KG_MASS),
    _m(codes.MDC_BASAL_METABOLISM, "basal metabolism", (codes.UCUM_KJ, "100", "50000")),
    _m(codes.MDC_BODY_MUSCLE, "muscle percentage", _PERCENT),
    _m(codes.MDC_MASS_BODY_MUSCLE, "muscle mass", _KG_MASS),
    _m(codes.MDC_BODY_ELECTRICAL_IMPEDANCE, "impedance", (codes.UCUM_OHM, "0", "10000")),
    _m(codes.MDC_PRESS_BLD_NONINV_SYS, "systolic blood pressure", (codes.UCUM_MMHG, "20", "300")),
    _m(codes.MDC_PRESS_BLD_NONINV_DIA, "diastolic blood pressure", (codes.UCUM_MMHG, "10", "250")),
    _m(codes.MDC_PRESS_BLD_NONINV_MEAN, "mean arterial pressure", (codes.UCUM_MMHG, "10", "300")),
    _m(codes.MDC_PULS_RATE_NON_INV, "pulse rate", _PULSE),
    _m(codes.MDC_PULS_OXIM_PULS_RATE, "pulse rate", _PULSE),
    _m(codes.MDC_ECG_HEART_RATE, "heart rate", _PULSE),
    _m(codes.MDC_PULS_OXIM_SAT_O2, "SpO2", _PERCENT),
    _m(codes.MDC_PULS_OXIM_PERF_REL, "pulse amplitude index", _PERCENT),
    _m(codes.MDC_SAT_O2_QUAL, "SpO2 signal quality", _PERCENT),
    *(
        _m(code, "body temperature", _TEMP)
        for code in (
            codes.MDC_TEMP_BODY, codes.MDC_TEMP_TYMP, codes.MDC_TEMP_RECT, codes.MDC_TEMP_ORAL,
            codes.MDC_TEMP_EAR, codes.MDC_TEMP_FINGER, codes.MDC_TEMP_TOE, codes.MDC_TEMP_AXILLA,
            codes.MDC_TEMP_GIT,
        )
    ),
    *(
        _m(code, "glucose", *_GLUCOSE)
        for code in (
            codes.MDC_CONC_GLU_GEN, codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD,
            codes.MDC_CONC_GLU_CAPILLARY_PLASMA, codes.MDC_CONC_GLU_VENOUS_WHOLEBLOOD,
            codes.MDC_CONC_GLU_VENOUS_PLASMA, codes.MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD,
            codes.MDC_CONC_GLU_ARTERIAL_PLASMA, codes.MDC_CONC_GLU_CONTROL,
            codes.MDC_CONC_GLU_ISF, codes.MDC_CONC_GLU_UNDETERMINED_PLASMA,
        )
    ),
    _m(codes.MDC_ATTR_VAL_BATT_CHARGE, "battery level", _PERCENT),
]  # fmt: skip

#: MDC code -> what the gateway accepts for it.
METRICS: Final[dict[int, Metric]] = {m.mdc: m for m in _METRICS}


def metric(mdc: int) -> Metric | None:
    return METRICS.get(mdc)


def mdc_unit_code(unit: str) -> int | None:
    """The MDC unit code paired with a UCUM unit (drivers.codes.MDC_UNIT), or None."""
    return codes.MDC_UNIT.get(unit)


def canonical_unit_of(unit: str) -> str:
    """The unit ``unit`` converts to (itself when it needs no conversion)."""
    convert = units.CONVERSIONS.get(unit)
    if convert is None:
        return unit
    probe, _ = convert(units.quantity(Decimal(1), unit))
    return probe.unit


def accepts_unit(m: Metric, unit: str) -> bool:
    """Whether a reading of ``m`` may arrive in ``unit`` (canonical or convertible)."""
    return canonical_unit_of(unit) in m.units


def to_canonical(value: Decimal, unit: str) -> tuple[Decimal, str]:
    """``value unit`` in its canonical unit via :func:`drivers.units.canonical`."""
    q, _ = units.canonical(Quantity(value, unit, codes.MDC_UNIT[unit]))
    assert q.value is not None
    return q.value, q.unit


def _loinc(mdc: int, unit: str) -> tuple[str, ...]:
    return codes.loinc(mdc) or (
        codes.LOINC_GLUCOSE_BY_UNIT.get(unit, ()) if METRICS[mdc].name == "glucose" else ()
    )


def codes_table() -> str:
    """The accepted-codes table of docs/protocol.md, in Markdown (``python -m gateway.catalog``)."""
    rows = [
        "| MDC | metric | UCUM unit | MDC unit | also accepted (converted) | LOINC | plausible |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METRICS.values():
        for r in m.ranges:
            alt = sorted(u for u in units.CONVERSIONS if canonical_unit_of(u) == r.unit)
            rows.append(
                f"| {m.mdc} | {m.name} | `{r.unit}` | {codes.MDC_UNIT[r.unit]} | "
                f"{', '.join(f'`{u}`' for u in alt) or '—'} | "
                f"{', '.join(_loinc(m.mdc, r.unit)) or '—'} | {r.low} to {r.high} |"
            )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(codes_table(), end="")  # noqa: T201
