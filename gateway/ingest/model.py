"""The ingester's value types: a normalised reading (one ``readings`` row), a rejection (one
``dead_letters`` row), what a batch stored, and the counters exposed for health/metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.db.readings import NormalizedReading

__all__ = ["NormalizedReading"]  # declared with the readings row it is (gateway.db.readings)


@dataclass(frozen=True, slots=True)
class Reject:
    """Why something was not stored: becomes a ``dead_letters`` row and a receipt entry.

    ``code`` is a short category for counters and logs (no health data); ``reason`` names the
    field and the problem and may quote values (it goes to the database and the hub's receipt,
    never to the log).
    """

    code: str
    reason: str
    key: str | None = None  # the reading's key, when it could be read
    payload: bytes = b""  # the whole message (message-level) or the reading's JSON


@dataclass(frozen=True, slots=True)
class DeadLetter:
    hub_id: str | None
    topic: str
    reject: Reject


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert raised (``new``) or an open one that counted further breaches."""

    alert_id: int
    patient_id: str
    rule_id: int
    new: bool
    occurrences: int  # breaches in this batch


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What one committed batch did (passed to ``on_stored``)."""

    stored: tuple[NormalizedReading, ...]
    duplicates: tuple[str, ...]
    rejected: tuple[DeadLetter, ...]
    alerts: tuple[AlertChange, ...]
    status_updates: int = 0


@dataclass
class Counters:
    """Monotonic counters since the ingester started (mutable by the ingester only)."""

    received: int = 0  # MQTT messages received and settled (readings and status)
    readings: int = 0  # readings seen in readings messages
    stored: int = 0
    held_stored: int = 0  # held records (no patient) stored for review
    duplicates: int = 0
    rejected: int = 0  # dead letters written
    alerts_raised: int = 0
    alerts_updated: int = 0
    status_updates: int = 0
    batches: int = 0
    receipts: int = 0
    rule_unit_skipped: int = 0  # rule comparisons skipped: no conversion to the rule's unit
    poison_messages: int = 0  # messages the database refused even alone (dead-lettered whole)
    db_errors: int = 0
    mqtt_errors: int = 0
    rejected_by_code: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, int]:
        out = {k: v for k in self.__dataclass_fields__ if isinstance(v := getattr(self, k), int)}
        for code, n in sorted(self.rejected_by_code.items()):
            out[f"rejected.{code}"] = n
        return out
