"""The alerting engine's value types: enums for levels, states, events and rule kinds, and the
frozen rule, observation and finding records that :mod:`gateway.alerting.evaluator` works on.

Everything here is pure data (no I/O). A rule is one immutable *version*: editing a rule makes a
new :class:`RuleVersion` with a higher ``version`` and a later ``effective_from``; the evaluator
picks the version in force at each reading's effective time (:mod:`gateway.alerting.versions`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Final


class AlertLevel(enum.Enum):
    """Clinical priority (reference §2.3). ``rank`` orders severities for escalation."""

    RED = "red"
    YELLOW = "yellow"
    BLUE = "blue"  # adherence (missed measurement)
    TECHNICAL = "technical"  # hub/device silent, equipment
    INFO = "info"  # worklist note ("repeat measurement")

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK: Final = {
    AlertLevel.INFO: 0,
    AlertLevel.BLUE: 1,
    AlertLevel.TECHNICAL: 1,
    AlertLevel.YELLOW: 2,
    AlertLevel.RED: 3,
}


class AlertState(enum.Enum):
    PENDING = "pending"  # awaiting confirmation (B2 repeat_within); never notified
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @property
    def live(self) -> bool:
        return self is not AlertState.RESOLVED


class AlertEventType(enum.Enum):
    CREATED = "created"
    OCCURRENCE = "occurrence"
    CONFIRMED = "confirmed"  # pending -> open
    SEVERITY_CHANGED = "severity_changed"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    INVALIDATED = "invalidated"
    NOTIFIED = "notified"
    ESCALATED = "escalated"


class RuleKind(enum.Enum):
    THRESHOLD = "threshold"
    DELTA = "delta"
    BEYOND_RANGE = "beyond_range"  # G5: the meter's HI/LO annunciation
    MISSING = "missing"  # A1: decided by the adherence sweep (gateway/notify/adherence.py)
    TECHNICAL = "technical"  # A3 (not evaluated by this version of the engine)


class Direction(enum.Enum):
    INCREASE = "increase"
    DECREASE = "decrease"


class DailyValue(enum.Enum):
    """Which valid reading of a patient-local day is the day's value."""

    FIRST = "first"
    LAST = "last"
    MIN = "min"
    MAX = "max"


class Reference(enum.Enum):
    """What the day's value is compared with, over the previous ``days`` local days."""

    MIN = "min"  # lowest daily value of the previous days (W1: gain over the lowest)
    MAX = "max"  # highest daily value (S4 drop below the highest)
    PREVIOUS = "previous"  # the daily value of the closest earlier day with data


class Gate(enum.Enum):
    """What gating decided for one reading (see :mod:`gateway.alerting.gating`)."""

    VALID = "valid"  # feeds physiological rules
    EXCLUDED = "excluded"  # stored, feeds nothing
    REPEAT = "repeat"  # stored, feeds nothing, makes an info item "repeat measurement"
    NEVER = "never"  # test/demo data, control solution: never an observation
    ABOVE_RANGE = "above_range"  # meter "HI"
    BELOW_RANGE = "below_range"  # meter "LO"


@dataclass(frozen=True, slots=True)
class Bands:
    """Threshold bands in one unit; any may be None. Validated monotone:
    ``red_low <= yellow_low <= yellow_high <= red_high``.

    Boundary semantics are explicit, per colour: with ``red_inclusive`` a value *equal* to a red
    bound is red (``value <= red_low``); without, it must be strictly beyond (``value < red_low``).
    S1 needs both: red ``< 88`` (exclusive), yellow ``<= 92`` (inclusive).
    """

    red_low: Decimal | None = None
    yellow_low: Decimal | None = None
    yellow_high: Decimal | None = None
    red_high: Decimal | None = None
    red_inclusive: bool = True
    yellow_inclusive: bool = True

    def __post_init__(self) -> None:
        seq = [
            b
            for b in (self.red_low, self.yellow_low, self.yellow_high, self.red_high)
            if b is not None
        ]
        if seq != sorted(seq):
            raise ValueError(f"bands are not monotone: {self}")


@dataclass(frozen=True, slots=True)
class Confirm:
    """A breach opens an alert only if a second breaching reading falls ``min_gap``..``max_gap``
    after (or before, for out-of-order arrival) the first (B2: 5-15 min)."""

    min_gap: timedelta
    max_gap: timedelta


@dataclass(frozen=True, slots=True)
class ThresholdParams:
    #: (metric, unit) -> bands: B2 carries systolic and diastolic, glucose mmol/L and mg/dL
    bands: dict[tuple[int, str], Bands]
    confirm: Confirm | None = None
    hysteresis: Decimal = Decimal(0)  # clear only at a margin inside the bands


@dataclass(frozen=True, slots=True)
class DeltaParams:
    unit: str
    days: int  # the previous local days the reference is taken from
    amount: Decimal  # strictly greater than
    direction: Direction
    daily_value: DailyValue = DailyValue.FIRST
    reference: Reference = Reference.MIN


ALL_WEEKDAYS: Final = frozenset(range(7))


@dataclass(frozen=True, slots=True)
class Slot:
    """A measurement due from ``start`` until ``deadline``, patient-local wall-clock times of one
    day, on ``weekdays`` (0 = Monday). A time that a DST change skips is the first instant after
    the gap; one it repeats, the first of the two (:mod:`gateway.alerting.adherence`)."""

    start: time
    deadline: time
    weekdays: frozenset[int] = ALL_WEEKDAYS

    def __post_init__(self) -> None:
        if not self.start < self.deadline:
            raise ValueError(f"slot start {self.start} must be before its deadline {self.deadline}")
        if not self.weekdays or not self.weekdays <= ALL_WEEKDAYS:
            raise ValueError("slot weekdays must be a non-empty subset of 0..6 (0 = Monday)")


@dataclass(frozen=True, slots=True)
class MissingParams:
    """A1: a measurement plan for one metric. A slot is missed when no valid reading of the
    metric (or a meter's HI/LO) falls between its start and its deadline plus ``grace``."""

    slots: tuple[Slot, ...]
    grace: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """One immutable version of one patient's rule."""

    rule_id: str  # the reference's id, e.g. "W1", "S1"
    version: int
    kind: RuleKind
    mdc: int
    level: AlertLevel  # the level a delta/beyond-range rule raises (threshold: per band)
    title: str
    source: str
    effective_from: datetime
    params: ThresholdParams | DeltaParams | MissingParams | None = None
    latching: bool = True  # red defaults to latching: resolved only by a human
    enabled: bool = True
    author: str = "template"
    reason: str = ""
    extra_mdcs: tuple[int, ...] = field(default=())  # e.g. B2 also reads diastolic

    @property
    def metrics(self) -> frozenset[int]:
        return frozenset((self.mdc, *self.extra_mdcs))


@dataclass(frozen=True, slots=True)
class Observation:
    """What the evaluator reads of a stored reading."""

    key: str
    patient_id: str
    mdc: int
    value: Decimal | None
    unit: str
    effective_at: datetime
    received_at: datetime
    flags: tuple[str, ...] = ()
    special: str | None = None
    kind: str = "spot"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule met by the readings: the store turns it into an alert or an occurrence."""

    patient_id: str
    rule_id: str
    version: int
    level: AlertLevel
    state: AlertState  # PENDING (awaiting confirmation) or OPEN
    reading_key: str
    effective_at: datetime
    value: Decimal | None
    unit: str
    late: bool
    message: str
    params: dict[str, str]  # the resolved parameters, as recorded on the alert
