"""Programme rule templates (heart failure, COPD, hypertension, diabetes) with the reference's
rule ids, and versioned per-patient overrides.

The numbers are *starting points* from ``clinical-alerting.md`` §1.1: a template is never applied
silently; the fleet file (or the API) activates a programme for a patient, which creates version 1
of each rule for that patient, and every later edit (:func:`override`) is a new immutable
version with an author, a reason and an effective-from time.

Rule families: one rule id per metric and direction, so yellow -> red is one alert escalating.
``P`` joins P1 (yellow) and P2 (red); ``G`` joins G1/G2 (low) and G3 (high); S1 and S2 each carry
their own red and yellow band.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from decimal import Decimal as D
from typing import Final

from drivers import codes
from gateway.alerting.model import (
    AlertLevel,
    Bands,
    Confirm,
    DeltaParams,
    Direction,
    MissingParams,
    Reference,
    RuleKind,
    RuleVersion,
    ThresholdParams,
)

KG: Final = "kg"
PCT: Final = "%"
MMHG: Final = "mm[Hg]"
PER_MIN: Final = "/min"
CEL: Final = "Cel"
MMOL: Final = "mmol/L"
MGDL: Final = "mg/dL"

SYS: Final = codes.MDC_PRESS_BLD_NONINV_SYS
DIA: Final = codes.MDC_PRESS_BLD_NONINV_DIA
PULSE_METRICS: Final = (codes.MDC_PULS_RATE_NON_INV, codes.MDC_PULS_OXIM_PULS_RATE)
GLUCOSE_METRICS: Final = (
    codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD,
    codes.MDC_CONC_GLU_CAPILLARY_PLASMA,
)


class Programme(enum.Enum):
    HEART_FAILURE = "heart_failure"
    COPD = "copd"
    HYPERTENSION = "hypertension"
    DIABETES = "diabetes"


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    rule_id: str
    kind: RuleKind
    mdc: int
    level: AlertLevel
    title: str
    source: str
    params: ThresholdParams | DeltaParams | None
    latching: bool = True
    extra_mdcs: tuple[int, ...] = ()


def _pulse() -> Template:
    bands = Bands(
        red_low=D(40), yellow_low=D(50), yellow_high=D(100), red_high=D(110),
        red_inclusive=False, yellow_inclusive=False,
    )  # fmt: skip
    return Template(
        "P", RuleKind.THRESHOLD, PULSE_METRICS[0], AlertLevel.RED,
        "Pulse abnormal (P1 yellow <50/>100, P2 red <40/>110)",
        "TELBIL (P1); BEAT-HF without symptoms (P2)",
        ThresholdParams({(m, PER_MIN): bands for m in PULSE_METRICS}, hysteresis=D(2)),
        latching=False, extra_mdcs=PULSE_METRICS[1:],
    )  # fmt: skip


def _temperature() -> Template:
    return Template(
        "T1", RuleKind.THRESHOLD, codes.MDC_TEMP_BODY, AlertLevel.RED,
        "Fever / hypothermia", "NEWS2 temperature bands",
        ThresholdParams({(codes.MDC_TEMP_BODY, CEL): Bands(
            red_low=D("35.0"), yellow_high=D("38.1"), red_high=D("39.1"))}),
    )  # fmt: skip


TEMPLATES: Final[dict[Programme, tuple[Template, ...]]] = {
    Programme.HEART_FAILURE: (
        Template(
            "W1", RuleKind.DELTA, codes.MDC_MASS_BODY_ACTUAL, AlertLevel.RED,
            "Fluid retention: > 2.0 kg over the lowest daily weight of the previous 3 days",
            "ESC HFA self-care (Jaarsma et al., Eur J Heart Fail 2021)",
            DeltaParams(KG, days=3, amount=D("2.0"), direction=Direction.INCREASE,
                        reference=Reference.MIN),
        ),
        Template(
            "W2", RuleKind.DELTA, codes.MDC_MASS_BODY_ACTUAL, AlertLevel.YELLOW,
            "Rapid gain: > 1.5 kg day over day",
            "BEAT-HF (Trials 2014;15:124, Table 1); TEN-HMS",
            DeltaParams(KG, days=1, amount=D("1.5"), direction=Direction.INCREASE,
                        reference=Reference.PREVIOUS),
        ),
        Template(
            "B4", RuleKind.THRESHOLD, SYS, AlertLevel.RED,
            "Hypotension (red SBP < 90, yellow < 100)", "BEAT-HF; NEWS2; TELBIL",
            ThresholdParams({(SYS, MMHG): Bands(red_low=D(90), yellow_low=D(100),
                                                red_inclusive=False, yellow_inclusive=False)}),
        ),
        _pulse(),
    ),
    Programme.COPD: (
        Template(
            "S1", RuleKind.THRESHOLD, codes.MDC_PULS_OXIM_SAT_O2, AlertLevel.RED,
            "SpO2 with a target of 88-92 % (red < 88, yellow 88-92)",
            "FUT IG GAL/RAL example; NEWS2 Scale 2",
            ThresholdParams({(codes.MDC_PULS_OXIM_SAT_O2, PCT): Bands(
                red_low=D(88), yellow_low=D(92), red_inclusive=False, yellow_inclusive=True)}),
        ),
        Template(
            "S4", RuleKind.DELTA, codes.MDC_PULS_OXIM_SAT_O2, AlertLevel.YELLOW,
            "SpO2 trend: day-to-day drop > 4 percentage points",
            "Int J Med Inform 2018 pilot",
            DeltaParams(PCT, days=1, amount=D(4), direction=Direction.DECREASE,
                        reference=Reference.PREVIOUS),
        ),
        _pulse(),
        _temperature(),
    ),
    Programme.HYPERTENSION: (
        Template(
            "B2", RuleKind.THRESHOLD, SYS, AlertLevel.RED,
            "Severe hypertension (SBP >= 180 or DBP >= 110), confirmed 5-15 min later",
            "ESH 2023 grade 3; AHA hypertensive crisis (re-test after 5 min)",
            ThresholdParams(
                {(SYS, MMHG): Bands(red_high=D(180)), (DIA, MMHG): Bands(red_high=D(110))},
                confirm=Confirm(timedelta(minutes=5), timedelta(minutes=15)),
            ),
            extra_mdcs=(DIA,),
        ),
        Template(
            "B4", RuleKind.THRESHOLD, SYS, AlertLevel.RED,
            "Hypotension (red SBP < 90, yellow < 100)", "BEAT-HF; NEWS2; TELBIL",
            ThresholdParams({(SYS, MMHG): Bands(red_low=D(90), yellow_low=D(100),
                                                red_inclusive=False, yellow_inclusive=False)}),
        ),
    ),
    Programme.DIABETES: (
        Template(
            "G", RuleKind.THRESHOLD, GLUCOSE_METRICS[0], AlertLevel.RED,
            "Glucose (G2 red < 3.0, G1 yellow < 3.9, G3 yellow > 13.9 mmol/L)",
            "ADA Standards table 6.3; IHSG; Agiostratidou et al., Diabetes Care 2017",
            ThresholdParams({
                **{(m, MMOL): Bands(red_low=D("3.0"), yellow_low=D("3.9"), yellow_high=D("13.9"),
                                    red_inclusive=False, yellow_inclusive=False)
                   for m in GLUCOSE_METRICS},
                **{(m, MGDL): Bands(red_low=D(54), yellow_low=D(70), yellow_high=D(250),
                                    red_inclusive=False, yellow_inclusive=False)
                   for m in GLUCOSE_METRICS},
            }),
            extra_mdcs=GLUCOSE_METRICS[1:],
        ),
        Template(
            "G5", RuleKind.BEYOND_RANGE, GLUCOSE_METRICS[0], AlertLevel.RED,
            "Glucose beyond the meter's range (HI/LO)", "device-formats.md §5 (GLS annunciation)",
            None, extra_mdcs=GLUCOSE_METRICS[1:],
        ),
    ),
}  # fmt: skip


def activate(programme: Programme, effective_from: datetime, author: str) -> list[RuleVersion]:
    """Version 1 of each of the programme's rules, as activated for a patient."""
    return [
        RuleVersion(
            rule_id=t.rule_id,
            version=1,
            kind=t.kind,
            mdc=t.mdc,
            level=t.level,
            title=t.title,
            source=t.source,
            effective_from=effective_from,
            params=t.params,
            latching=t.latching,
            author=author,
            reason=f"programme {programme.value} activated",
            extra_mdcs=t.extra_mdcs,
        )
        for t in TEMPLATES[programme]
    ]


def override(
    current: RuleVersion,
    *,
    author: str,
    reason: str,
    effective_from: datetime,
    params: ThresholdParams | DeltaParams | None = None,
    level: AlertLevel | None = None,
    enabled: bool | None = None,
) -> RuleVersion:
    """A new immutable version of ``current`` (never an edit in place)."""
    if not author or not reason:
        raise ValueError("an override needs an author and a reason")
    if effective_from < current.effective_from:
        raise ValueError("an override cannot take effect before the version it replaces")
    return dataclasses.replace(
        current,
        version=current.version + 1,
        effective_from=effective_from,
        author=author,
        reason=reason,
        params=current.params if params is None else params,
        level=current.level if level is None else level,
        enabled=current.enabled if enabled is None else enabled,
    )


#: A1's source (reference: clinical-alerting.md A1)
A1_SOURCE: Final = "OpenTele blue alarm; FUT missing measurement (Communication + Task, routine)"


def missing_rule_id(mdc: int) -> str:
    """The rule id of a patient's measurement plan for one metric: one A1 rule (and so one live
    blue alert) per metric."""
    return f"A1-{mdc}"


def missing_rule(
    mdc: int, params: MissingParams, *, name: str, effective_from: datetime, author: str,
    version: int = 1, reason: str = "measurement plan",
) -> RuleVersion:  # fmt: skip
    """A1 for one metric of a patient's measurement plan: blue, routine, non-latching (resolved
    by the sweep when every missed slot's data arrived late)."""
    return RuleVersion(
        rule_id=missing_rule_id(mdc), version=version, kind=RuleKind.MISSING, mdc=mdc,
        level=AlertLevel.BLUE, title=f"Missed measurement: {name}", source=A1_SOURCE,
        effective_from=effective_from, params=params, latching=False, author=author,
        reason=reason,
    )  # fmt: skip
