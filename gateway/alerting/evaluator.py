"""The pure rule evaluator: ``(rule versions, the patient's readings, new reading keys, timezone)
-> findings``. No I/O, no clock: the store loads the readings, this decides, the store writes.

Determinism: the result depends only on the *set* of readings (deduplicated by key) and the rule
versions, never on arrival order. Every decision uses a reading's effective time; arrival time
only decides ``late`` (``received_at - effective_at > late_after``), which caps the level at
yellow (reference §5.4).

Rule kinds:

* ``threshold`` -- one reading against red/yellow bands in the reading's unit (a rule family per
  metric: one rule id whose level rises yellow -> red). Optional confirmation (B2): the breach is
  ``pending`` until a second breaching reading lies ``min_gap..max_gap`` before or after it.
* ``delta`` -- the daily value (first valid reading of the patient-local day by default) of the
  reading's day compared with a reference over the previous N local days (W1, W2, S4). Days are
  ``[local 00:00, next local 00:00)``, so 23 h and 25 h days on DST changes are handled by
  :mod:`zoneinfo`. A late reading re-evaluates its own day and every later day with data.
* ``beyond_range`` -- G5: the meter's HI/LO annunciation is a red finding, never "missing".

Gated readings (:mod:`gateway.alerting.gating`) feed nothing; the BP movement/cuff/position
flags make an info finding ``DQ1`` ("repeat measurement") when the patient has a rule on that
metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from gateway.alerting import gating
from gateway.alerting.model import (
    AlertLevel,
    AlertState,
    Bands,
    DailyValue,
    DeltaParams,
    Direction,
    Finding,
    Gate,
    Observation,
    Reference,
    RuleKind,
    RuleVersion,
    ThresholdParams,
)

DEFAULT_TZ: Final = ZoneInfo("Europe/Copenhagen")
LATE_AFTER: Final = timedelta(hours=1)
#: The info item made for a reading gated with "repeat measurement".
REPEAT_RULE_ID: Final = "DQ1"


@dataclass(frozen=True, slots=True)
class Clear:
    """A valid normal reading (beyond the hysteresis margin) for a non-latching rule."""

    patient_id: str
    rule_id: str
    reading_key: str
    effective_at: datetime


@dataclass(frozen=True, slots=True)
class Result:
    findings: tuple[Finding, ...] = ()
    clears: tuple[Clear, ...] = ()


def version_at(versions: Iterable[RuleVersion], rule_id: str, at: datetime) -> RuleVersion | None:
    """The version of ``rule_id`` in force at ``at``: latest ``effective_from <= at``, then the
    highest version number. None if none was in force yet (or it was disabled)."""
    best: RuleVersion | None = None
    for v in versions:
        if v.rule_id != rule_id or v.effective_from > at:
            continue
        if best is None or (v.effective_from, v.version) > (best.effective_from, best.version):
            best = v
    return best if best is not None and best.enabled else None


def band_level(bands: Bands, value: Decimal) -> AlertLevel | None:
    """The band ``value`` falls in (red beats yellow), honouring ``inclusive``."""

    def low(bound: Decimal | None, inclusive: bool) -> bool:
        return bound is not None and (value <= bound if inclusive else value < bound)

    def high(bound: Decimal | None, inclusive: bool) -> bool:
        return bound is not None and (value >= bound if inclusive else value > bound)

    if low(bands.red_low, bands.red_inclusive) or high(bands.red_high, bands.red_inclusive):
        return AlertLevel.RED
    yi = bands.yellow_inclusive
    if low(bands.yellow_low, yi) or high(bands.yellow_high, yi):
        return AlertLevel.YELLOW
    return None


def _normal_with_margin(bands: Bands, value: Decimal, margin: Decimal) -> bool:
    lows = [b for b in (bands.red_low, bands.yellow_low) if b is not None]
    highs = [b for b in (bands.red_high, bands.yellow_high) if b is not None]
    return all(value >= b + margin for b in lows) and all(value <= b - margin for b in highs)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def is_late(obs: Observation, late_after: timedelta = LATE_AFTER) -> bool:
    return obs.received_at - obs.effective_at > late_after


def _params_of(rule: RuleVersion) -> dict[str, str]:
    p = rule.params
    out: dict[str, str] = {"kind": rule.kind.value, "version": str(rule.version)}
    if isinstance(p, ThresholdParams):
        for (mdc, unit), b in sorted(p.bands.items()):
            for name in ("red_low", "yellow_low", "yellow_high", "red_high"):
                if (x := getattr(b, name)) is not None:
                    out[f"{name}[{mdc} {unit}]"] = str(x)
            out[f"inclusive[{mdc} {unit}]"] = f"red={b.red_inclusive},yellow={b.yellow_inclusive}"
        if p.confirm is not None:
            out["confirm"] = f"{p.confirm.min_gap}..{p.confirm.max_gap}"
    elif isinstance(p, DeltaParams):
        out |= {
            "amount": f"{p.amount} {p.unit}",
            "days": str(p.days),
            "direction": p.direction.value,
            "daily_value": p.daily_value.value,
            "reference": p.reference.value,
        }
    return out


def _cap(level: AlertLevel, late: bool, flags: Sequence[str]) -> AlertLevel:
    capped = late or any(f in gating.CAP_YELLOW_FLAGS for f in flags)
    if capped and level is AlertLevel.RED:
        return AlertLevel.YELLOW
    return level


class _Day:
    __slots__ = ("obs", "value")

    def __init__(self, obs: Observation, value: Decimal) -> None:
        self.obs = obs
        self.value = value


def _daily_values(
    readings: Iterable[Observation], p: DeltaParams, tz: ZoneInfo
) -> dict[date, _Day]:
    per_day: dict[date, list[Observation]] = {}
    for o in readings:
        per_day.setdefault(local_day(o.effective_at, tz), []).append(o)
    out: dict[date, _Day] = {}
    for day, obs in per_day.items():
        obs.sort(key=lambda o: (o.effective_at, o.key))  # a total order: arrival order is moot
        pick: Observation
        if p.daily_value is DailyValue.FIRST:
            pick = obs[0]
        elif p.daily_value is DailyValue.LAST:
            pick = obs[-1]
        elif p.daily_value is DailyValue.MIN:
            pick = min(obs, key=lambda o: (o.value, o.effective_at, o.key))
        else:
            pick = max(obs, key=lambda o: (o.value, o.effective_at, o.key))
        assert pick.value is not None
        out[day] = _Day(pick, pick.value)
    return out


class Evaluator:
    """Evaluates one patient's readings against that patient's rule versions."""

    def __init__(
        self,
        patient_id: str,
        versions: Sequence[RuleVersion],
        tz: ZoneInfo = DEFAULT_TZ,
        late_after: timedelta = LATE_AFTER,
    ) -> None:
        self.patient_id = patient_id
        self.versions = tuple(versions)
        self.tz = tz
        self.late_after = late_after
        self.rule_ids = sorted({v.rule_id for v in self.versions})
        self.by_metric: dict[int, list[str]] = {}
        for v in self.versions:
            for m in v.metrics:
                ids = self.by_metric.setdefault(m, [])
                if v.rule_id not in ids:
                    ids.append(v.rule_id)

    def evaluate(
        self,
        readings: Iterable[Observation],
        new_keys: Iterable[str],
        delta_keys: Iterable[str] | None = None,
    ) -> Result:
        """Findings for the readings keyed ``new_keys``; ``readings`` is the patient's window
        (all readings the rules may need, the new ones included). Duplicated keys count once.

        ``delta_keys`` (default: all new keys) are the new readings that may change a daily
        value; the store passes only the first valid readings of their local day (for
        ``first`` daily values nothing else can change a delta finding), so that a batch of
        readings that are not a day's first needs no window of history."""
        delta_only = None if delta_keys is None else frozenset(delta_keys)
        window: dict[str, Observation] = {}
        for o in readings:
            if o.patient_id == self.patient_id:
                window.setdefault(o.key, o)
        new = sorted(
            (window[k] for k in set(new_keys) if k in window),
            key=lambda o: (o.effective_at, o.key),
        )
        gates = {k: gating.gate(o) for k, o in window.items()}
        findings: dict[tuple[str, str], Finding] = {}
        clears: list[Clear] = []
        delta_days: dict[str, set[date]] = {}
        for obs in new:
            g = gates[obs.key]
            for rule_id in self.by_metric.get(obs.mdc, ()):
                rule = version_at(self.versions, rule_id, obs.effective_at)
                if rule is None:
                    continue
                if rule.kind is RuleKind.THRESHOLD and g is Gate.VALID:
                    f, c = self._threshold(rule, obs, window, gates)
                    if f is not None:
                        findings[(rule_id, obs.key)] = f
                    elif c is not None:
                        clears.append(c)
                elif rule.kind is RuleKind.DELTA and g is Gate.VALID:
                    if gating.TIME_FAULT not in obs.flags and (
                        delta_only is None or obs.key in delta_only
                    ):
                        delta_days.setdefault(rule_id, set()).add(
                            local_day(obs.effective_at, self.tz)
                        )
                elif rule.kind is RuleKind.BEYOND_RANGE and g in (
                    Gate.ABOVE_RANGE,
                    Gate.BELOW_RANGE,
                ):
                    findings[(rule_id, obs.key)] = self._beyond(rule, obs, g)
            if g is Gate.REPEAT and obs.mdc in self.by_metric:
                findings[(REPEAT_RULE_ID, obs.key)] = Finding(
                    self.patient_id, REPEAT_RULE_ID, 1, AlertLevel.INFO, AlertState.OPEN,
                    obs.key, obs.effective_at, obs.value, obs.unit, is_late(obs, self.late_after),
                    "repeat measurement: the device reported a measurement problem",
                    {"flags": ",".join(sorted(set(obs.flags) & gating.REPEAT_FLAGS))},
                )  # fmt: skip
        for rule_id, days in sorted(delta_days.items()):
            for f in self._delta(rule_id, min(days), window, gates):
                findings.setdefault((rule_id, f.reading_key), f)
        ordered = sorted(
            findings.values(), key=lambda f: (f.rule_id, f.effective_at, f.reading_key)
        )
        return Result(tuple(ordered), tuple(clears))

    # -- rule kinds -------------------------------------------------------------------------------

    def _threshold(
        self,
        rule: RuleVersion,
        obs: Observation,
        window: Mapping[str, Observation],
        gates: Mapping[str, Gate],
    ) -> tuple[Finding | None, Clear | None]:
        p = rule.params
        assert isinstance(p, ThresholdParams) and obs.value is not None
        bands = p.bands.get((obs.mdc, obs.unit))
        if bands is None:
            return None, None  # no bands in this unit: never compared by guessing a conversion
        level = band_level(bands, obs.value)
        if level is None:
            if not rule.latching and _normal_with_margin(bands, obs.value, p.hysteresis):
                return None, Clear(self.patient_id, rule.rule_id, obs.key, obs.effective_at)
            return None, None
        late = is_late(obs, self.late_after)
        state = AlertState.OPEN
        if p.confirm is not None and not self._confirmed(rule, p, obs, window, gates):
            state = AlertState.PENDING
        msg = f"{rule.title}: {obs.value} {obs.unit} ({level.value})"
        return (
            Finding(
                self.patient_id, rule.rule_id, rule.version, _cap(level, late, obs.flags), state,
                obs.key, obs.effective_at, obs.value, obs.unit, late, msg, _params_of(rule),
            ),
            None,
        )  # fmt: skip

    def _confirmed(
        self,
        rule: RuleVersion,
        p: ThresholdParams,
        obs: Observation,
        window: Mapping[str, Observation],
        gates: Mapping[str, Gate],
    ) -> bool:
        assert p.confirm is not None
        for other in window.values():
            if (
                other.key == obs.key
                or other.mdc not in rule.metrics
                or gates[other.key] is not Gate.VALID
            ):
                continue
            gap = abs(other.effective_at - obs.effective_at)
            if not p.confirm.min_gap <= gap <= p.confirm.max_gap:
                continue
            b = p.bands.get((other.mdc, other.unit))
            if b is not None and other.value is not None and band_level(b, other.value) is not None:
                return True
        return False

    def _beyond(self, rule: RuleVersion, obs: Observation, g: Gate) -> Finding:
        late = is_late(obs, self.late_after)
        side = "above" if g is Gate.ABOVE_RANGE else "below"
        return Finding(
            self.patient_id, rule.rule_id, rule.version, _cap(rule.level, late, ()),
            AlertState.OPEN, obs.key, obs.effective_at, None, obs.unit, late,
            f"{rule.title}: result {side} the meter's range", _params_of(rule) | {"side": side},
        )  # fmt: skip

    def _delta(
        self,
        rule_id: str,
        first_day: date,
        window: Mapping[str, Observation],
        gates: Mapping[str, Gate],
    ) -> list[Finding]:
        versions = [v for v in self.versions if v.rule_id == rule_id]
        metrics = frozenset().union(*(v.metrics for v in versions))
        out: list[Finding] = []
        cache: dict[int, dict[date, _Day]] = {}
        # every day from the earliest new reading's day to the last day with data is re-evaluated
        candidates = sorted(
            {
                local_day(o.effective_at, self.tz)
                for o in window.values()
                if o.mdc in metrics and gates[o.key] is Gate.VALID
                and gating.TIME_FAULT not in o.flags
                and local_day(o.effective_at, self.tz) >= first_day
            }
        )  # fmt: skip
        for day in candidates:
            noon = datetime.combine(day, datetime.min.time().replace(hour=12), self.tz)
            rule = version_at(versions, rule_id, noon)
            if rule is None:
                continue
            p = rule.params
            assert isinstance(p, DeltaParams)
            if rule.version not in cache:
                cache[rule.version] = _daily_values(
                    (
                        o for o in window.values()
                        if o.mdc in metrics and gates[o.key] is Gate.VALID and o.unit == p.unit
                        and gating.TIME_FAULT not in o.flags
                    ),
                    p,
                    self.tz,
                )  # fmt: skip
            daily = cache[rule.version]
            today = daily.get(day)
            if today is None:
                continue
            prev = [
                daily[d]
                for d in (day - timedelta(days=i) for i in range(1, p.days + 1))
                if d in daily
            ]
            if not prev:
                continue
            if p.reference is Reference.MIN:
                ref = min(d.value for d in prev)
            elif p.reference is Reference.MAX:
                ref = max(d.value for d in prev)
            else:
                ref = prev[0].value  # the closest earlier day with data
            change = today.value - ref if p.direction is Direction.INCREASE else ref - today.value
            if change <= p.amount:
                continue
            late = is_late(today.obs, self.late_after)
            word = "gain" if p.direction is Direction.INCREASE else "drop"
            out.append(
                Finding(
                    self.patient_id, rule_id, rule.version, _cap(rule.level, late, ()),
                    AlertState.OPEN, today.obs.key, today.obs.effective_at, today.value, p.unit,
                    late, f"{rule.title}: {word} {change} {p.unit} over {p.days} local day(s)",
                    _params_of(rule) | {"reference_value": str(ref), "change": str(change)},
                )
            )  # fmt: skip
        return out
