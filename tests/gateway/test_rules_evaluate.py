"""Pure rule evaluation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

import pytest

from gateway.rules import NOT_EVALUATED, Breach, Evaluation, Rule, evaluate


@dataclass(frozen=True)
class R:
    patient_id: str = "p1"
    mdc: int = 150456
    value: Decimal | None = Decimal("88")
    unit: str = "%"
    special: str | None = None
    kind: str = "spot"
    flags: tuple[str, ...] = ()
    orig_value: Decimal | None = None
    orig_unit: str | None = None


SPO2_LOW = Rule(1, "p1", 150456, "<", Decimal("90"), "%", "critical", "SpO2 low")


@pytest.mark.parametrize(
    ("op", "threshold", "value", "hit"),
    [
        ("<", "90", "89.9", True), ("<", "90", "90", False), ("<=", "90", "90.0", True),
        (">", "38", "38.01", True), (">", "38", "38", False), (">=", "38", "38.00", True),
    ],
)  # fmt: skip
def test_operators_on_decimals(op: str, threshold: str, value: str, hit: bool) -> None:
    rule = replace(SPO2_LOW, op=op, threshold=Decimal(threshold))  # type: ignore[arg-type]
    got = evaluate(R(value=Decimal(value)), [rule])
    assert got == Evaluation((Breach(rule, Decimal(value), "%"),) if hit else ())


def test_only_rules_of_the_patient_and_metric() -> None:
    other_patient = replace(SPO2_LOW, rule_id=2, patient_id="p2")
    other_metric = replace(SPO2_LOW, rule_id=3, mdc=149530, unit="/min")
    assert evaluate(R(), [other_patient, other_metric, SPO2_LOW]) == Evaluation(
        (Breach(SPO2_LOW, Decimal("88"), "%"),)
    )
    assert Breach(SPO2_LOW, Decimal("88"), "%").message == "SpO2 low: 88 % < 90 %"


@pytest.mark.parametrize(
    "reading",
    [
        R(value=None, special="nan"),
        R(kind="intermediate"),
        R(kind="control"),
        R(kind="device"),
        R(flags=("invalid-measurement-detected",)),
        R(flags=("data-for-testing",)),
        R(flags=("data-for-demonstration",)),
        R(flags=("measurement-unavailable",)),
        R(mdc=160208, unit="mg/dL"),  # glucose control solution
    ],
)
def test_non_clinical_readings_are_not_evaluated(reading: R) -> None:
    rule = replace(SPO2_LOW, mdc=reading.mdc, unit=reading.unit)
    assert evaluate(reading, [rule]) is NOT_EVALUATED


def test_rule_in_original_unit_compares_the_original_value() -> None:
    rule = Rule(5, "p1", 188736, ">", Decimal("200"), "[lb_av]", "warning")
    r = R(
        mdc=188736,
        value=Decimal("90.81"),
        unit="kg",
        orig_value=Decimal("200.2"),
        orig_unit="[lb_av]",
    )
    assert evaluate(r, [rule]) == Evaluation((Breach(rule, Decimal("200.2"), "[lb_av]"),))


def test_rule_in_convertible_unit_converts_the_threshold() -> None:
    rule = Rule(6, "p1", 150364, ">=", Decimal("100.4"), "[degF]", "warning")  # = 38.00 Cel
    assert evaluate(R(mdc=150364, value=Decimal("38.0"), unit="Cel"), [rule]) == Evaluation(
        (Breach(rule, Decimal("38.0"), "Cel"),)
    )
    assert evaluate(R(mdc=150364, value=Decimal("37.9"), unit="Cel"), [rule]) == Evaluation()


def test_rule_in_unconvertible_unit_is_skipped_and_counted() -> None:
    rule = Rule(7, "p1", 160184, ">", Decimal("180"), "mg/dL", "warning")
    r = R(mdc=160184, value=Decimal("15.0"), unit="mmol/L")
    assert evaluate(r, [rule]) == Evaluation((), skipped_unit=1)


def test_converted_threshold_keeps_its_precision() -> None:
    """200 [lb_av] = 90.718474 kg: a 90.72 kg reading breaches '> 200 [lb_av]' (90.7 would not
    be the threshold)."""
    rule = Rule(8, "p1", 188736, ">", Decimal("200"), "[lb_av]", "warning")
    assert evaluate(R(mdc=188736, value=Decimal("90.72"), unit="kg"), [rule]) == Evaluation(
        (Breach(rule, Decimal("90.72"), "kg"),)
    )
    assert evaluate(R(mdc=188736, value=Decimal("90.71"), unit="kg"), [rule]) == Evaluation()
