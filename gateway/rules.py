"""Per-patient alert rules: a pure evaluation of one reading against the patient's rules.

A rule is ``<metric> <op> <threshold> <unit>`` (e.g. SpO2 ``<`` 90 ``%``). A reading is evaluated
only if it is a clinical observation:

* it has a value (special values — NaN, NRes, "measurement unsuccessful" — never breach);
* its kind is ``spot`` or ``continuous`` (not intermediate cuff pressure, control solution or
  device state);
* none of its flags marks it invalid, test/demonstration data, unavailable, or control solution
  (:data:`SKIP_FLAGS`), and its metric is not the glucose control-solution code.

The comparison happens in the rule's unit, exactly, on Decimals:

1. rule unit == reading unit: compare the value;
2. rule unit == the reading's original unit (the device sent e.g. ``[lb_av]`` and it was converted
   to ``kg``): compare the original value;
3. the rule's unit converts to the reading's unit with :mod:`drivers.units` (a rule in
   ``[degF]``, a reading in ``Cel``): compare against the converted threshold;
4. otherwise (glucose ``mg/dL`` rule, ``mmol/L`` reading) the rule is skipped and counted in
   :attr:`Evaluation.skipped_unit`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, Protocol

from drivers import codes
from gateway import catalog

Op = Literal["<", "<=", ">", ">="]
Severity = Literal["info", "warning", "critical"]

_OPS: Final[dict[str, Callable[[Decimal, Decimal], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

#: Kinds of record that rules apply to.
CLINICAL_KINDS: Final = frozenset({"spot", "continuous"})
#: Reading flags that exclude a reading from rule evaluation.
SKIP_FLAGS: Final = frozenset({
    "invalid-measurement-detected",  # PLX measurement status b15
    "measurement-unavailable",  # PLX b13
    "data-for-testing",  # PLX b11 (HTEST)
    "data-for-demonstration",  # PLX b10
    "invalid",
    "test-data",
    "control-solution",
})  # fmt: skip
#: Metrics that are never a patient observation.
SKIP_METRICS: Final = frozenset({codes.MDC_CONC_GLU_CONTROL})


_TEN_DECIMALS: Final = Decimal("1E-10")


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: int
    patient_id: str
    mdc: int
    op: Op
    threshold: Decimal
    unit: str
    severity: Severity
    description: str | None = None


class Evaluable(Protocol):
    """What rule evaluation reads from a reading (the ingester's normalised reading)."""

    @property
    def patient_id(self) -> str: ...
    @property
    def mdc(self) -> int: ...
    @property
    def value(self) -> Decimal | None: ...
    @property
    def unit(self) -> str: ...
    @property
    def special(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def flags(self) -> Sequence[str]: ...
    @property
    def orig_value(self) -> Decimal | None: ...
    @property
    def orig_unit(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Breach:
    rule: Rule
    value: Decimal  # the value compared, in ``unit``
    unit: str  # the unit of the comparison

    @property
    def message(self) -> str:
        what = self.rule.description or (
            m.name if (m := catalog.metric(self.rule.mdc)) else f"MDC {self.rule.mdc}"
        )
        r = self.rule
        return f"{what}: {self.value} {self.unit} {r.op} {r.threshold} {r.unit}"


@dataclass(frozen=True, slots=True)
class Evaluation:
    breaches: tuple[Breach, ...] = ()
    skipped_unit: int = 0  # rules of the reading's metric that could not be compared (unit)
    evaluated: bool = True  # False: the reading is not a clinical observation (see module doc)


NOT_EVALUATED: Final = Evaluation(evaluated=False)


def is_evaluable(reading: Evaluable) -> bool:
    return (
        reading.value is not None
        and reading.special is None
        and reading.kind in CLINICAL_KINDS
        and reading.mdc not in SKIP_METRICS
        and not any(f in SKIP_FLAGS for f in reading.flags)
    )


def _threshold_in(rule: Rule, unit: str) -> Decimal | None:
    """The rule's threshold in ``unit`` (None if drivers.units has no such conversion)."""
    if rule.unit == unit:
        return rule.threshold
    if catalog.mdc_unit_code(rule.unit) is None or catalog.canonical_unit_of(rule.unit) != unit:
        return None
    # drivers.units rounds to the source's resolution (+1 digit): give the threshold ten decimals
    # first so that the converted threshold is exact to 1e-10 and no breach is lost to rounding
    value, _ = catalog.to_canonical(rule.threshold.quantize(_TEN_DECIMALS), rule.unit)
    return value.normalize()


def evaluate(reading: Evaluable, rules: Iterable[Rule]) -> Evaluation:
    """The breaches of ``rules`` by ``reading`` (rules of other patients/metrics are ignored)."""
    if not is_evaluable(reading):
        return NOT_EVALUATED
    assert reading.value is not None
    breaches: list[Breach] = []
    skipped = 0
    for rule in rules:
        if rule.mdc != reading.mdc or rule.patient_id != reading.patient_id:
            continue
        compare = _OPS[rule.op]
        if rule.unit == reading.unit:
            if compare(reading.value, rule.threshold):
                breaches.append(Breach(rule, reading.value, reading.unit))
        elif rule.unit == reading.orig_unit and reading.orig_value is not None:
            if compare(reading.orig_value, rule.threshold):
                breaches.append(Breach(rule, reading.orig_value, rule.unit))
        else:
            threshold = _threshold_in(rule, reading.unit)
            if threshold is None:
                skipped += 1
            elif compare(reading.value, threshold):
                breaches.append(Breach(rule, reading.value, reading.unit))
    return Evaluation(tuple(breaches), skipped)
