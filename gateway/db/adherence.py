"""The adherence slots (migration 96): one row per measurement-plan slot occurrence the A1 sweep
(:mod:`gateway.notify.adherence`) has decided, so that each slot is decided once whichever
gateway sweeps, a held slot is decided again when its hub is back, and a missed one can be
found when its reading arrives late."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode


def v96(_mode: StorageMode) -> list[str]:
    return [
        """
        CREATE TABLE IF NOT EXISTS adherence_slots (
            patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
            rule_code text NOT NULL,
            rule_version integer NOT NULL,
            day date NOT NULL,
            slot integer NOT NULL CHECK (slot >= 0),
            opens timestamptz NOT NULL,
            closes timestamptz NOT NULL CHECK (closes > opens),
            outcome text NOT NULL
                CHECK (outcome IN ('met', 'missed', 'late', 'held', 'suppressed')),
            decided_at timestamptz NOT NULL,
            alert_id bigint NULL REFERENCES clinical_alerts (alert_id) ON DELETE SET NULL,
            PRIMARY KEY (patient_id, rule_code, day, slot)
        )""",
        "CREATE INDEX IF NOT EXISTS adherence_slots_alert ON adherence_slots (alert_id)"
        " WHERE outcome = 'missed'",
    ]
