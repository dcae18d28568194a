"""A rule version as JSON (``alert_rule_versions.definition``) and back, exactly (Decimals as
strings), so that the version stored is the version evaluated."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from gateway.alerting.model import (
    AlertLevel,
    Bands,
    Confirm,
    DailyValue,
    DeltaParams,
    Direction,
    MissingParams,
    Reference,
    RuleKind,
    RuleVersion,
    Slot,
    ThresholdParams,
)

_BOUNDS = ("red_low", "yellow_low", "yellow_high", "red_high")


def _dec(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _undec(x: Any) -> Decimal | None:
    return None if x is None else Decimal(str(x))


def encode(rule: RuleVersion) -> dict[str, Any]:
    p = rule.params
    params: dict[str, Any] | None = None
    if isinstance(p, ThresholdParams):
        params = {
            "bands": [
                {"mdc": mdc, "unit": unit, **{n: _dec(getattr(b, n)) for n in _BOUNDS},
                 "red_inclusive": b.red_inclusive, "yellow_inclusive": b.yellow_inclusive}
                for (mdc, unit), b in sorted(p.bands.items())
            ],
            "confirm": None if p.confirm is None else [
                p.confirm.min_gap.total_seconds(), p.confirm.max_gap.total_seconds()],
            "hysteresis": str(p.hysteresis),
        }  # fmt: skip
    elif isinstance(p, DeltaParams):
        params = {
            "unit": p.unit, "days": p.days, "amount": str(p.amount),
            "direction": p.direction.value, "daily_value": p.daily_value.value,
            "reference": p.reference.value,
        }  # fmt: skip
    elif isinstance(p, MissingParams):
        params = {
            "slots": [{"start": s.start.isoformat("minutes"),
                       "deadline": s.deadline.isoformat("minutes"),
                       "weekdays": sorted(s.weekdays)} for s in p.slots],
            "grace": p.grace.total_seconds(),
        }  # fmt: skip
    return {
        "kind": rule.kind.value, "mdc": rule.mdc, "level": rule.level.value,
        "title": rule.title, "source": rule.source, "latching": rule.latching,
        "extra_mdcs": list(rule.extra_mdcs), "params": params,
    }  # fmt: skip


def decode(
    rule_id: str,
    version: int,
    definition: dict[str, Any],
    *,
    effective_from: datetime,
    enabled: bool,
    author: str,
    reason: str,
) -> RuleVersion:
    kind = RuleKind(definition["kind"])
    raw = definition.get("params")
    params: ThresholdParams | DeltaParams | MissingParams | None = None
    if kind is RuleKind.MISSING:
        assert raw is not None
        params = MissingParams(
            slots=tuple(
                Slot(time.fromisoformat(s["start"]), time.fromisoformat(s["deadline"]),
                     frozenset(int(d) for d in s["weekdays"]))
                for s in raw["slots"]
            ),
            grace=timedelta(seconds=float(raw["grace"])),
        )  # fmt: skip
    elif kind is RuleKind.THRESHOLD:
        assert raw is not None
        bands = {
            (int(b["mdc"]), str(b["unit"])): Bands(
                red_low=_undec(b["red_low"]),
                yellow_low=_undec(b["yellow_low"]),
                yellow_high=_undec(b["yellow_high"]),
                red_high=_undec(b["red_high"]),
                red_inclusive=bool(b["red_inclusive"]),
                yellow_inclusive=bool(b["yellow_inclusive"]),
            )
            for b in raw["bands"]
        }
        c = raw.get("confirm")
        confirm = None if c is None else Confirm(timedelta(seconds=c[0]), timedelta(seconds=c[1]))
        params = ThresholdParams(bands, confirm, Decimal(raw.get("hysteresis", "0")))
    elif kind is RuleKind.DELTA:
        assert raw is not None
        params = DeltaParams(
            unit=raw["unit"], days=int(raw["days"]), amount=Decimal(raw["amount"]),
            direction=Direction(raw["direction"]), daily_value=DailyValue(raw["daily_value"]),
            reference=Reference(raw["reference"]),
        )  # fmt: skip
    return RuleVersion(
        rule_id=rule_id, version=version, kind=kind, mdc=int(definition["mdc"]),
        level=AlertLevel(definition["level"]), title=definition["title"],
        source=definition["source"], effective_from=effective_from, params=params,
        latching=bool(definition["latching"]), enabled=enabled, author=author, reason=reason,
        extra_mdcs=tuple(int(m) for m in definition.get("extra_mdcs", ())),
    )  # fmt: skip
