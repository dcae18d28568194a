"""The quiet-reading filter in front of the evaluator: most readings change nothing.

A reading is *quiet* when the full evaluator could only ever say "no finding" about it: no rule of
the patient reads its metric; or it is a clean, valid value (no flag the engine interprets, no
special value, a clinical kind) and, for every rule on its metric, the rule's newest version is in
force at the reading's time and is a threshold the value does not breach, or a delta rule and the
reading is not its local day's first (the store checks that in one query). A quiet reading still
yields the :class:`~gateway.alerting.evaluator.Clear` a non-latching rule gets from a normal
value beyond the hysteresis margin, computed here exactly as the evaluator does.

Everything else — breaches, flags, specials, readings older than a rule's newest version — goes
to the evaluator unchanged, so the findings are the same with or without this filter
(``tests/alerting/test_fastpath.py`` checks that on random batches). Pure; no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerting import gating
from gateway.alerting.evaluator import Clear
from gateway.alerting.model import Bands, RuleKind, RuleVersion, ThresholdParams


class Verdict(enum.Enum):
    IRRELEVANT = "irrelevant"  # no rule reads this metric
    QUIET = "quiet"  # no finding possible; clears (if any) are returned
    DELTA = "delta"  # quiet for thresholds; a delta rule needs its day-first check
    EVALUATE = "evaluate"  # the evaluator must see it


@dataclass(frozen=True, slots=True)
class _Band:
    """One (metric, unit)'s bands as plain bounds: quiet iff ``low_ok`` and ``high_ok``."""

    lows: tuple[tuple[Decimal, bool], ...]  # (bound, inclusive): a breach is <= (or <)
    highs: tuple[tuple[Decimal, bool], ...]
    clear_from: Decimal | None  # a non-latching rule clears at value >= this ...
    clear_to: Decimal | None  # ... and <= this (None: no bound on that side)

    def breached(self, value: Decimal) -> bool:
        for b, inclusive in self.lows:
            if value <= b if inclusive else value < b:
                return True
        for b, inclusive in self.highs:  # noqa: SIM110 (a loop: no generator per reading)
            if value >= b if inclusive else value > b:
                return True
        return False

    def clears(self, value: Decimal) -> bool:
        return (self.clear_from is None or value >= self.clear_from) and (
            self.clear_to is None or value <= self.clear_to
        )


def _band(bands: Bands, hysteresis: Decimal) -> _Band:
    lows = tuple(
        (b, inc)
        for b, inc in (
            (bands.red_low, bands.red_inclusive),
            (bands.yellow_low, bands.yellow_inclusive),
        )
        if b is not None
    )
    highs = tuple(
        (b, inc)
        for b, inc in (
            (bands.red_high, bands.red_inclusive),
            (bands.yellow_high, bands.yellow_inclusive),
        )
        if b is not None
    )
    return _Band(
        lows,
        highs,
        max(b for b, _ in lows) + hysteresis if lows else None,
        min(b for b, _ in highs) - hysteresis if highs else None,
    )


@dataclass(frozen=True, slots=True)
class _Rule:
    rule_id: str
    newest_from: datetime  # the newest version's effective_from
    newest: RuleVersion | None  # None: the newest version disables the rule
    kind: RuleKind | None  # of the newest version (None: disabled)
    bands: dict[tuple[int, str], _Band]  # thresholds of the newest version
    clears: bool  # non-latching threshold: a normal value beyond the margin clears


@dataclass(frozen=True, slots=True)
class Compiled:
    """One patient's rule versions, indexed by metric, for :func:`classify`."""

    by_metric: dict[int, tuple[_Rule, ...]]


def compile_rules(versions: Sequence[RuleVersion]) -> Compiled:
    newest: dict[str, RuleVersion] = {}
    for v in versions:
        n = newest.get(v.rule_id)
        if n is None or (v.effective_from, v.version) > (n.effective_from, n.version):
            newest[v.rule_id] = v
    by_metric: dict[int, list[_Rule]] = {}
    for v in versions:
        for m in v.metrics:
            rules = by_metric.setdefault(m, [])
            if all(r.rule_id != v.rule_id for r in rules):
                n = newest[v.rule_id]
                p = n.params
                bands = (
                    {k: _band(b, p.hysteresis) for k, b in p.bands.items()}
                    if isinstance(p, ThresholdParams)
                    else {}
                )
                rules.append(
                    _Rule(
                        v.rule_id, n.effective_from, n if n.enabled else None,
                        n.kind if n.enabled else None, bands, not n.latching,
                    )
                )  # fmt: skip
    return Compiled({m: tuple(rs) for m, rs in by_metric.items()})


def classify(c: Compiled, r: Any, clears: list[Clear]) -> Verdict:
    """``r``: a stored reading (``NormalizedReading``-like). Appends a quiet reading's clears."""
    rules = c.by_metric.get(r.mdc)
    if rules is None:
        return Verdict.IRRELEVANT
    value: Decimal | None = r.value
    if (
        value is None
        or r.special is not None
        or (r.flags and not gating.ALL_GATING_FLAGS.isdisjoint(r.flags))
        or r.kind not in gating.CLINICAL_KINDS
        or r.mdc in gating.NEVER_METRICS
    ):
        return Verdict.EVALUATE
    verdict = Verdict.QUIET
    mine: list[Clear] = []
    key = (r.mdc, r.unit)
    for rule in rules:
        if r.time < rule.newest_from:
            return Verdict.EVALUATE  # an older version may be in force: let version_at decide
        kind = rule.kind
        if kind is RuleKind.THRESHOLD:
            band = rule.bands.get(key)
            if band is None:
                continue  # no bands in this unit: never compared
            if band.breached(value):
                return Verdict.EVALUATE
            if rule.clears and band.clears(value):
                mine.append(Clear(r.patient_id, rule.rule_id, r.key, r.time))
        elif kind is RuleKind.DELTA:
            verdict = Verdict.DELTA
        # disabled, or beyond-range (needs a HI/LO flag, which a clean reading has not)
    if mine:
        clears.extend(mine)
    return verdict


class LocalDays:
    """``at.astimezone(tz).date()`` without a zone conversion per reading: remembers, per zone,
    the UTC span of the last local day seen (a batch's readings mostly share a few days).
    Spans come from zoneinfo, so days of 23 or 25 hours (DST) are exact."""

    __slots__ = ("_spans",)

    def __init__(self) -> None:
        self._spans: dict[ZoneInfo, tuple[datetime, datetime, date]] = {}

    def local_date(self, at: datetime, tz: ZoneInfo) -> date:
        span = self._spans.get(tz)
        if span is not None and span[0] <= at < span[1]:
            return span[2]
        day = at.astimezone(tz).date()
        # in the readings' own zone (UTC): comparing datetimes of one tzinfo needs no offsets
        start = datetime.combine(day, time(0), tz).astimezone(at.tzinfo)
        end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(at.tzinfo)
        self._spans[tz] = (start, end, day)
        return day


def _clean(r: Any) -> bool:
    return not (
        r.value is None
        or r.special is not None
        or (r.flags and not gating.ALL_GATING_FLAGS.isdisjoint(r.flags))
        or r.kind not in gating.CLINICAL_KINDS
        or r.mdc in gating.NEVER_METRICS
    )


@dataclass(slots=True)
class Partition:
    """A batch split by :func:`partition`."""

    evaluate: list[Any]  # readings the evaluator must see
    delta: list[Any]  # clean readings quiet for thresholds: the earliest per local day each
    clears: list[Clear]  # what the quiet readings clear (the latest per group and rule)


def partition(compiled: dict[str, tuple[ZoneInfo, Compiled]], inserted: Sequence[Any]) -> Partition:
    """:func:`classify` for a whole batch, by group (patient, metric, unit) rather than by
    reading: bands are intervals, so a group whose lowest and highest values breach no band has
    no breach at all, and of its normal values only the latest clearing one matters (a later
    clear supersedes an earlier one). A group with a breach, or older than a rule's newest
    version, is classified reading by reading."""
    out = Partition([], [], [])
    groups: dict[tuple[str, int, str], list[Any]] = {}
    for r in inserted:
        entry = compiled.get(r.patient_id)
        if entry is None or r.mdc not in entry[1].by_metric:
            continue
        if not _clean(r):
            out.evaluate.append(r)
            continue
        g = groups.get((r.patient_id, r.mdc, r.unit))
        if g is None:
            groups[(r.patient_id, r.mdc, r.unit)] = [r]
        else:
            g.append(r)
    days = LocalDays()
    for (pid, mdc, unit), rs in groups.items():
        tz, c = compiled[pid]
        rules = c.by_metric[mdc]
        first = min(r.time for r in rs)
        values = [r.value for r in rs]
        low, high = min(values), max(values)
        one_by_one = False
        has_delta = False
        clear_rules: list[tuple[_Rule, _Band]] = []
        for rule in rules:
            if first < rule.newest_from:
                one_by_one = True
                break
            if rule.kind is RuleKind.THRESHOLD:
                band = rule.bands.get((mdc, unit))
                if band is None:
                    continue
                if band.breached(low) or band.breached(high):
                    one_by_one = True
                    break
                if rule.clears:
                    clear_rules.append((rule, band))
            elif rule.kind is RuleKind.DELTA:
                has_delta = True
        if one_by_one:
            for r in rs:
                clears: list[Clear] = []
                verdict = classify(c, r, clears)
                if verdict is Verdict.EVALUATE:
                    out.evaluate.append(r)
                    continue
                out.clears.extend(clears)
                if verdict is Verdict.DELTA:
                    out.delta.append(r)  # the store keeps the earliest per day itself
            continue
        for rule, band in clear_rules:
            best = None
            for r in rs:
                if band.clears(r.value) and (best is None or r.time > best.time):
                    best = r
            if best is not None:
                out.clears.append(Clear(pid, rule.rule_id, best.key, best.time))
        if has_delta:
            earliest: dict[date, Any] = {}
            for r in rs:
                d = days.local_date(r.time, tz)
                e = earliest.get(d)
                if e is None or (r.time, r.key) < (e.time, e.key):
                    earliest[d] = r
            out.delta.extend(earliest.values())
    return out
