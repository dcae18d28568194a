"""The pure evaluator: bands and boundaries, delta over patient-local days (DST), confirmation,
G5, gating, late data, versions in force, order independence and duplicates."""

from __future__ import annotations

import ast
import itertools
import pathlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from drivers import codes
from gateway.alerting import gating
from gateway.alerting.evaluator import DEFAULT_TZ, REPEAT_RULE_ID, Evaluator, band_level, version_at
from gateway.alerting.model import (
    AlertLevel,
    AlertState,
    Bands,
    Observation,
    ThresholdParams,
)
from gateway.alerting.templates import TEMPLATES, Programme, activate, override

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPO2 = codes.MDC_PULS_OXIM_SAT_O2
WEIGHT = codes.MDC_MASS_BODY_ACTUAL
SYS = codes.MDC_PRESS_BLD_NONINV_SYS
GLU = codes.MDC_CONC_GLU_CAPILLARY_PLASMA


def obs(
    key: str, mdc: int, value: str | None, unit: str, at: datetime, *,
    received: datetime | None = None, flags: tuple[str, ...] = (), patient: str = "p1",
) -> Observation:  # fmt: skip
    return Observation(
        key, patient, mdc, None if value is None else D(value), unit, at, received or at, flags
    )


def ev(programme: Programme, since: datetime = T0) -> Evaluator:
    return Evaluator("p1", activate(programme, since, "dr-test"))


def run(
    e: Evaluator, readings: list[Observation], new: list[str] | None = None
) -> list[tuple[str, str, str]]:
    res = e.evaluate(readings, [r.key for r in readings] if new is None else new)
    return [(f.rule_id, f.level.value, f.reading_key) for f in res.findings]


# -- threshold bands and boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("87", "red"),
        ("87.9", "red"),
        ("88", "yellow"),
        ("92", "yellow"),
        ("92.1", None),
        ("97", None),
    ],
)
def test_s1_boundaries_are_explicit(value: str, level: str | None) -> None:
    [s1] = [t for t in TEMPLATES[Programme.COPD] if t.rule_id == "S1"]
    assert isinstance(s1.params, ThresholdParams)
    got = band_level(s1.params.bands[(SPO2, "%")], D(value))
    assert (got.value if got else None) == level


def test_bands_must_be_monotone() -> None:
    with pytest.raises(ValueError, match="monotone"):
        Bands(red_low=D(90), yellow_low=D(80))


def test_yellow_then_red_is_one_rule_family() -> None:
    e = ev(Programme.COPD)
    got = run(e, [obs("a", SPO2, "90", "%", T0 + timedelta(hours=1)),
                  obs("b", SPO2, "86", "%", T0 + timedelta(hours=2))])  # fmt: skip
    assert got == [("S1", "yellow", "a"), ("S1", "red", "b")]


def test_unit_without_bands_is_not_compared() -> None:
    e = ev(Programme.COPD)
    assert run(e, [obs("a", SPO2, "0.80", "1", T0 + timedelta(hours=1))]) == []


def test_glucose_bands_in_both_units() -> None:
    e = ev(Programme.DIABETES)
    got = run(e, [obs("a", GLU, "2.9", "mmol/L", T0 + timedelta(hours=1)),
                  obs("b", GLU, "60", "mg/dL", T0 + timedelta(hours=2)),
                  obs("c", GLU, "14.0", "mmol/L", T0 + timedelta(hours=3))])  # fmt: skip
    assert got == [("G", "red", "a"), ("G", "yellow", "b"), ("G", "yellow", "c")]


# -- G5 and gating ---------------------------------------------------------------------------------


def test_meter_hi_is_red_beyond_range_not_missing() -> None:
    e = ev(Programme.DIABETES)
    res = e.evaluate([obs("hi", GLU, None, "mmol/L", T0 + timedelta(hours=1),
                          flags=(gating.RESULT_TOO_HIGH,))], ["hi"])  # fmt: skip
    [f] = res.findings
    assert (f.rule_id, f.level, f.params["side"]) == ("G5", AlertLevel.RED, "above")


@pytest.mark.parametrize(
    "flag",
    [gating.INVALID_MEASUREMENT, gating.LOW_PERFUSION, gating.DATA_FOR_TESTING,
     gating.DATA_FOR_DEMONSTRATION, gating.MEASUREMENT_ONGOING],
)  # fmt: skip
def test_gated_spo2_feeds_no_rule(flag: str) -> None:
    e = ev(Programme.COPD)
    assert run(e, [obs("a", SPO2, "80", "%", T0 + timedelta(hours=1), flags=(flag,))]) == []


def test_bp_movement_gives_repeat_item_not_red() -> None:
    e = ev(Programme.HYPERTENSION)
    got = run(e, [obs("a", SYS, "200", "mm[Hg]", T0 + timedelta(hours=1),
                      flags=(gating.BODY_MOVEMENT,))])  # fmt: skip
    assert got == [(REPEAT_RULE_ID, "info", "a")]


def test_control_solution_never_an_observation() -> None:
    e = ev(Programme.DIABETES)
    got = run(e, [obs("a", GLU, "1.0", "mmol/L", T0 + timedelta(hours=1),
                      flags=(gating.CONTROL_SOLUTION,))])  # fmt: skip
    assert got == []


def _driver_string_literals() -> set[str]:
    root = pathlib.Path(__file__).resolve().parents[2] / "drivers"
    out: set[str] = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def test_every_gating_flag_is_one_a_driver_emits() -> None:
    missing = gating.ALL_GATING_FLAGS - _driver_string_literals()
    assert not missing, f"gating flags no driver emits: {sorted(missing)}"


# -- confirmation (B2) -----------------------------------------------------------------------------


def test_b2_pending_until_confirmed_in_5_to_15_min_either_order() -> None:
    e = ev(Programme.HYPERTENSION)
    first = obs("a", SYS, "185", "mm[Hg]", T0 + timedelta(hours=1))
    second = obs("b", SYS, "182", "mm[Hg]", T0 + timedelta(hours=1, minutes=7))
    [f] = e.evaluate([first], ["a"]).findings
    assert f.state is AlertState.PENDING
    both = e.evaluate([second, first], ["b", "a"]).findings
    assert [(x.reading_key, x.state) for x in both] == [
        ("a", AlertState.OPEN),
        ("b", AlertState.OPEN),
    ]
    too_soon = obs("c", SYS, "182", "mm[Hg]", T0 + timedelta(hours=1, minutes=2))
    assert e.evaluate([first, too_soon], ["a"]).findings[0].state is AlertState.PENDING


# -- delta over patient-local days --


def local(y: int, m: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=DEFAULT_TZ)


def test_w1_gain_over_lowest_of_previous_3_local_days() -> None:
    e = ev(Programme.HEART_FAILURE)
    rs = [obs("d1", WEIGHT, "80.0", "kg", local(2026, 2, 1, 7)),
          obs("d2", WEIGHT, "79.5", "kg", local(2026, 2, 2, 7)),
          obs("d3", WEIGHT, "80.5", "kg", local(2026, 2, 3, 7)),
          obs("d4", WEIGHT, "81.6", "kg", local(2026, 2, 4, 7))]  # fmt: skip
    res = e.evaluate(rs, [r.key for r in rs])
    w1 = [f for f in res.findings if f.rule_id == "W1"]
    assert [(f.reading_key, f.params["change"]) for f in w1] == [("d4", "2.1")]


def test_w1_exactly_2_kg_is_not_more_than_2() -> None:
    e = ev(Programme.HEART_FAILURE)
    rs = [obs("d1", WEIGHT, "80.0", "kg", local(2026, 2, 1, 7)),
          obs("d2", WEIGHT, "82.0", "kg", local(2026, 2, 4, 7))]  # fmt: skip
    assert [f for f in e.evaluate(rs, ["d2"]).findings if f.rule_id == "W1"] == []


def test_daily_value_is_first_valid_reading_of_local_day() -> None:
    e = ev(Programme.HEART_FAILURE)
    # 23:30 UTC on 1 Feb is 00:30 local on 2 Feb: it is 2 Feb's first reading
    rs = [obs("d1", WEIGHT, "80.0", "kg", local(2026, 2, 1, 8)),
          obs("d2a", WEIGHT, "82.5", "kg", datetime(2026, 2, 1, 23, 30, tzinfo=UTC)),
          obs("d2b", WEIGHT, "80.1", "kg", local(2026, 2, 2, 9)),
          obs("bad", WEIGHT, "70.0", "kg", local(2026, 2, 2, 0, 10),
              flags=(gating.DATA_FOR_TESTING,))]  # fmt: skip
    got = [(f.rule_id, f.reading_key) for f in e.evaluate(rs, ["d2b"]).findings]
    assert got == [("W1", "d2a"), ("W2", "d2a")]


@pytest.mark.parametrize(
    ("day_before", "day"),
    [((2026, 3, 28), (2026, 3, 29)), ((2026, 10, 24), (2026, 10, 25)),
     ((2026, 3, 29), (2026, 3, 30)), ((2026, 10, 25), (2026, 10, 26))],
)  # fmt: skip
def test_local_days_on_dst_changes(
    day_before: tuple[int, int, int], day: tuple[int, int, int]
) -> None:
    e = ev(Programme.HEART_FAILURE)
    # late evening and just after local midnight: adjacent local days despite 23 h / 25 h days
    rs = [obs("x", WEIGHT, "80.0", "kg", local(*day_before, 23, 45)),
          obs("y", WEIGHT, "81.6", "kg", local(*day, 0, 15))]  # fmt: skip
    assert [f.rule_id for f in e.evaluate(rs, ["y"]).findings] == ["W2"]


def test_s4_day_to_day_drop() -> None:
    e = ev(Programme.COPD)
    rs = [obs("a", SPO2, "97", "%", local(2026, 2, 1, 8)),
          obs("b", SPO2, "92.5", "%", local(2026, 2, 2, 8))]  # fmt: skip
    assert [f.rule_id for f in e.evaluate(rs, ["b"]).findings] == ["S4"]


def test_late_reading_reevaluates_later_days() -> None:
    e = ev(Programme.HEART_FAILURE)
    d2 = obs("d2", WEIGHT, "81.6", "kg", local(2026, 2, 2, 7))
    late_d1 = obs("d1", WEIGHT, "80.0", "kg", local(2026, 2, 1, 7), received=local(2026, 2, 2, 9))
    got = e.evaluate([d2, late_d1], ["d1"]).findings
    assert [(f.rule_id, f.reading_key, f.late) for f in got] == [("W2", "d2", False)]


# -- late, order, duplicates, versions -------------------------------------------------------------


def test_late_red_is_capped_at_yellow_and_flagged() -> None:
    e = ev(Programme.COPD)
    r = obs("a", SPO2, "80", "%", T0 + timedelta(hours=1), received=T0 + timedelta(hours=28))
    [f] = e.evaluate([r], ["a"]).findings
    assert (f.level, f.late) == (AlertLevel.YELLOW, True)


def test_same_readings_same_findings_in_any_order_with_duplicates() -> None:
    e = ev(Programme.HEART_FAILURE)
    rs = [obs(f"k{i}", WEIGHT, v, "kg", local(2026, 2, 1 + i, 7)) for i, v in
          enumerate(["80.0", "79.0", "81.5", "82.0", "80.0"])]  # fmt: skip
    expect = e.evaluate(rs, [r.key for r in rs]).findings
    assert expect
    for perm in itertools.permutations(rs):
        doubled = [*perm, perm[0], perm[2]]
        assert e.evaluate(doubled, [r.key for r in doubled]).findings == expect


def test_version_in_force_at_effective_time_is_used_and_recorded() -> None:
    v1 = activate(Programme.COPD, T0, "dr-a")
    s1 = next(v for v in v1 if v.rule_id == "S1")
    changed = override(
        s1, author="dr-b", reason="target 85-88 for this patient",
        effective_from=T0 + timedelta(days=10),
        params=ThresholdParams({(SPO2, "%"): Bands(red_low=D(85), yellow_low=D(88),
                                                   red_inclusive=False)}),
    )  # fmt: skip
    e = Evaluator("p1", [*v1, changed])
    old = obs("old", SPO2, "87", "%", T0 + timedelta(days=9), received=T0 + timedelta(days=11))
    new = obs("new", SPO2, "87", "%", T0 + timedelta(days=11))
    got = {f.reading_key: f for f in e.evaluate([old, new], ["old", "new"]).findings}
    assert (got["old"].version, got["old"].level) == (1, AlertLevel.YELLOW)  # red capped: late
    assert (got["new"].version, got["new"].level) == (2, AlertLevel.YELLOW)
    assert got["new"].params["red_low[150456 %]"] == "85"


def test_override_needs_author_and_reason_and_no_backdating() -> None:
    [s1, *_] = activate(Programme.COPD, T0, "dr-a")
    with pytest.raises(ValueError, match="author"):
        override(s1, author="", reason="x", effective_from=T0)
    with pytest.raises(ValueError, match="before"):
        override(s1, author="a", reason="x", effective_from=T0 - timedelta(days=1))


def test_no_rule_before_programme_activation_and_disable_is_a_version() -> None:
    versions = activate(Programme.COPD, T0, "dr-a")
    s1 = next(v for v in versions if v.rule_id == "S1")
    off = override(s1, author="dr-a", reason="palliative", effective_from=T0 + timedelta(days=1),
                   enabled=False)  # fmt: skip
    assert version_at([s1, off], "S1", T0 - timedelta(seconds=1)) is None
    assert version_at([s1, off], "S1", T0) is s1
    assert version_at([s1, off], "S1", T0 + timedelta(days=2)) is None


def test_non_latching_pulse_clears_only_beyond_hysteresis() -> None:
    e = ev(Programme.HEART_FAILURE)
    pulse = codes.MDC_PULS_RATE_NON_INV
    near = e.evaluate([obs("n", pulse, "99", "/min", T0 + timedelta(hours=1))], ["n"])
    clear = e.evaluate([obs("c", pulse, "70", "/min", T0 + timedelta(hours=1))], ["c"])
    assert (near.findings, near.clears) == ((), ())
    assert [c.rule_id for c in clear.clears] == ["P"]


def test_other_patients_readings_are_ignored() -> None:
    e = ev(Programme.COPD)
    assert run(e, [obs("a", SPO2, "80", "%", T0 + timedelta(hours=1), patient="p2")]) == []
