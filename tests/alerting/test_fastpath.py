"""The quiet-reading filter never hides a finding: whatever it lets past the evaluator, the
evaluator itself would have found nothing for, and the clears it computes are the evaluator's.
Plus the whole scenario suite with the filter switched off, so both paths give the same alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from drivers import codes
from gateway.alerting import gating, scenarios, store
from gateway.alerting.evaluator import Clear, Evaluator
from gateway.alerting.fastpath import LocalDays, Verdict, classify, compile_rules, partition
from gateway.alerting.model import Observation, RuleVersion, ThresholdParams
from gateway.alerting.templates import Programme, activate, override

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
METRICS = sorted(
    {m for p in Programme for v in activate(p, T0, "t") for m in v.metrics}
    | {codes.MDC_ATTR_VAL_BATT_CHARGE, codes.MDC_PULS_OXIM_PERF_REL}
)
UNITS = ["%", "/min", "kg", "mm[Hg]", "Cel", "mmol/L", "mg/dL"]
FLAGS = [*sorted(gating.ALL_GATING_FLAGS)[:12], "device-clock-implausible", "clock-not-set"]


@dataclass(frozen=True)
class Reading:
    """What the store hands the filter (the NormalizedReading fields it reads)."""

    key: str
    patient_id: str
    mdc: int
    value: Decimal | None
    unit: str
    time: datetime
    received_at: datetime
    flags: list[str] = field(default_factory=list)
    special: str | None = None
    kind: str = "spot"


#: every band bound of every programme, and values just either side of them
BOUNDS = sorted(
    {
        b + d
        for p in Programme
        for v in activate(p, T0, "t")
        if isinstance(v.params, ThresholdParams)
        for bands in v.params.bands.values()
        for b in (bands.red_low, bands.yellow_low, bands.yellow_high, bands.red_high)
        if b is not None
        for d in (Decimal(n) / 10 for n in range(-50, 51, 5))
    }
)
#: the unit the rules use for each metric (a reading in another unit is never compared)
UNIT_OF = {
    m: u
    for p in Programme
    for v in activate(p, T0, "t")
    if isinstance(v.params, ThresholdParams)
    for (m, u) in v.params.bands
}


@st.composite
def readings(draw: st.DrawFn, programme: Programme) -> Reading:
    own = sorted({m for v in activate(programme, T0, "t") for m in v.metrics})
    mdc = draw(st.sampled_from(own * 9 + METRICS))
    unit = draw(st.sampled_from([UNIT_OF.get(mdc, "%")] * 9 + UNITS))
    value = draw(
        st.one_of(
            st.sampled_from(BOUNDS),
            st.sampled_from(BOUNDS),
            st.decimals(min_value=0, max_value=400, places=1, allow_nan=False),
            st.none(),
        )
    )
    return Reading(
        "k", "p", mdc, value, unit,
        T0 + timedelta(hours=draw(st.integers(-48, 24 * 20))), T0 + timedelta(days=30),
        draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True) | st.just([])),
        draw(st.sampled_from([None] * 9 + ["nan"])),
        draw(st.sampled_from(["spot", "continuous"] * 4 + ["intermediate"])),
    )  # fmt: skip


def _versions(programme: Programme, edited: bool) -> list[RuleVersion]:
    versions = activate(programme, T0, "t")
    if edited:  # a second version later on, of the first rule: older readings use version 1
        v1 = versions[0]
        versions.append(
            override(v1, author="dr", reason="r", effective_from=T0 + timedelta(days=10))
        )
    return versions


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), programme=st.sampled_from(list(Programme)), edited=st.booleans())
def test_what_the_filter_passes_by_the_evaluator_finds_nothing(
    data: st.DataObject, programme: Programme, edited: bool
) -> None:
    r = data.draw(readings(programme))
    versions = _versions(programme, edited)
    clears: list[object] = []
    verdict = classify(compile_rules(versions), r, clears)  # type: ignore[arg-type]
    if verdict is Verdict.EVALUATE:
        return
    obs = Observation(r.key, r.patient_id, r.mdc, r.value, r.unit, r.time, r.received_at,
                      tuple(r.flags), r.special, r.kind)  # fmt: skip
    # not a day's first (the store sends a day's first clean reading to the evaluator)
    result = Evaluator("p", versions).evaluate([obs], [obs.key], delta_keys=set())
    assert result.findings == ()
    assert list(result.clears) == clears
    event(f"{verdict.value}, {len(clears)} clears")


def test_the_filter_sees_breaches_and_flags() -> None:
    versions = activate(Programme.COPD, T0, "t")
    c = compile_rules(versions)
    ok = Reading("k", "p", codes.MDC_PULS_OXIM_SAT_O2, Decimal(97), "%", T0, T0)
    assert classify(c, ok, []) is Verdict.DELTA  # S4 is a delta rule on SpO2
    assert classify(c, replace(ok, value=Decimal(85)), []) is Verdict.EVALUATE
    assert classify(c, replace(ok, flags=[gating.LOW_PERFUSION]), []) is Verdict.EVALUATE
    assert classify(c, replace(ok, mdc=codes.MDC_ATTR_VAL_BATT_CHARGE), []) is Verdict.IRRELEVANT
    assert classify(c, replace(ok, time=T0 - timedelta(seconds=1)), []) is Verdict.EVALUATE


SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


@pytest.mark.integration
async def test_every_scenario_also_passes_without_the_filter(
    pg_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "FAST_PATH", False)
    outcomes = await scenarios.run(SCENARIOS, pg_admin_dsn)
    failed = [line for o in outcomes for ok, line in o.lines if not ok]
    assert len(outcomes) == len(SCENARIOS) >= 30
    assert failed == []


@pytest.mark.parametrize("programme", list(Programme), ids=lambda p: p.value)
def test_every_band_edge_of_every_programme(programme: Programme) -> None:
    """The same property on a grid: each metric of the programme, in its rules' unit, at every
    band bound and ±0.5…5 around it (where hysteresis margins lie), before and after an edit."""
    for edited in (False, True):
        versions = _versions(programme, edited)
        compiled = compile_rules(versions)
        evaluator = Evaluator("p", versions)
        for mdc in sorted({m for v in versions for m in v.metrics}):
            for value in BOUNDS:
                for t in (T0 + timedelta(days=1), T0 + timedelta(days=11)):
                    r = Reading("k", "p", mdc, value, UNIT_OF.get(mdc, "%"), t, t)
                    clears: list[object] = []
                    if classify(compiled, r, clears) is Verdict.EVALUATE:  # type: ignore[arg-type]
                        continue
                    obs = Observation("k", "p", mdc, value, r.unit, t, t)
                    result = evaluator.evaluate([obs], ["k"], delta_keys=set())
                    assert (result.findings, list(result.clears)) == ((), clears), (mdc, value)


@settings(max_examples=300, deadline=None)
@given(
    minutes=st.lists(st.integers(0, 60 * 24 * 6), min_size=1, max_size=50),
    zone=st.sampled_from(["Europe/Copenhagen", "America/Santiago", "Australia/Lord_Howe", "UTC"]),
    start=st.sampled_from([datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC)]),
)
def test_local_days_are_the_zone_conversion(minutes: list[int], zone: str, start: datetime) -> None:
    tz = ZoneInfo(zone)
    days = LocalDays()
    for m in minutes:  # any order, across the DST changes of that week
        at = start + timedelta(minutes=m, seconds=m % 7)
        assert days.local_date(at, tz) == at.astimezone(tz).date()


def _latest(clears: Sequence[Clear]) -> dict[tuple[str, str], datetime]:
    out: dict[tuple[str, str], datetime] = {}
    for c in clears:
        k = (c.patient_id, c.rule_id)
        if k not in out or c.effective_at > out[k]:
            out[k] = c.effective_at
    return out


def _earliest(rs: Sequence[Reading], tz: ZoneInfo) -> set[str]:
    best: dict[tuple[str, int, str, object], Reading] = {}
    for r in rs:
        g = (r.patient_id, r.mdc, r.unit, r.time.astimezone(tz).date())
        if g not in best or (r.time, r.key) < (best[g].time, best[g].key):
            best[g] = r
    return {r.key for r in best.values()}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), programme=st.sampled_from(list(Programme)), edited=st.booleans())
def test_partition_of_a_batch_is_classify_of_each_reading(
    data: st.DataObject, programme: Programme, edited: bool
) -> None:
    tz = ZoneInfo("Europe/Copenhagen")
    raw = data.draw(st.lists(readings(programme), min_size=1, max_size=40))
    batch = [
        replace(r, key=f"k{i}", patient_id=data.draw(st.sampled_from(["p1", "p2"])))
        for i, r in enumerate(raw)
    ]
    compiled = compile_rules(_versions(programme, edited))
    evaluate, delta, clears = [], [], []
    for r in batch:
        mine: list[Clear] = []
        v = classify(compiled, r, mine)
        clears.extend(mine)
        if v is Verdict.EVALUATE:
            evaluate.append(r.key)
        elif v is Verdict.DELTA:
            delta.append(r)
    part = partition({"p1": (tz, compiled), "p2": (tz, compiled)}, batch)
    assert sorted(r.key for r in part.evaluate) == sorted(evaluate)
    assert _earliest(part.delta, tz) == _earliest(delta, tz)
    assert _latest(part.clears) == _latest(clears)


def test_a_group_clears_with_its_latest_normal_reading() -> None:
    tz = ZoneInfo("Europe/Copenhagen")
    compiled = compile_rules(activate(Programme.COPD, T0, "t"))  # P is non-latching
    pulse = codes.MDC_PULS_OXIM_PULS_RATE
    at = [T0 + timedelta(minutes=m) for m in (20, 30, 10)]
    batch = [Reading(f"k{i}", "p", pulse, Decimal(70), "/min", t, t) for i, t in enumerate(at)]
    batch.append(Reading("k9", "p", pulse, Decimal("99.5"), "/min", at[1] + timedelta(1), T0))
    part = partition({"p": (tz, compiled)}, batch)
    assert part.evaluate == []
    # 99.5 is normal but inside the hysteresis margin (yellow > 100, margin 2): no clear
    assert [(c.rule_id, c.reading_key) for c in part.clears] == [("P", "k1")]
