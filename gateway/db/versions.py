"""Reading versions (migration 92): a reading re-decoded by ``telehub reprocess`` is a new version.

A stored reading is never changed and never deleted by a correction. ``telehub reprocess
--apply`` (:mod:`telehub.reprocess`) marks the version it corrects ``superseded_at`` /
``superseded_run`` and inserts the corrected reading as a new row with its own idempotency key;
``reading_versions`` links the two (``change`` = ``changed``, ``added`` — a metric the old decode
missed — or ``removed`` — a metric the old decode invented), ``reprocess_runs`` says who ran what,
why, and what it did.

Everything that reads readings for a clinical purpose reads only current versions
(``superseded_at IS NULL``): the API, FHIR, the alert engine's history window and day-first
query, and the aggregates, which this migration re-creates with that filter (TimescaleDB: the
continuous aggregates are dropped and created again with their policies; until the first refresh
they answer by real-time aggregation from the raw rows). Superseded versions stay in ``readings``
so that their idempotency keys keep deduplicating: a hub that re-sends the old record (a meter
re-sending its memory) is answered ``duplicate``, and the wrong value never returns.

An alert raised only by superseded readings is *entered in error*: ``clinical_alerts.
entered_in_error`` and an ``invalidated`` event (audited, delivered like the alert was).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.db import lifecycle

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode


def v92(mode: StorageMode) -> list[str]:
    out = [
        "ALTER TABLE readings ADD COLUMN IF NOT EXISTS superseded_at timestamptz NULL",
        "ALTER TABLE readings ADD COLUMN IF NOT EXISTS superseded_run bigint NULL",
        """
        CREATE TABLE IF NOT EXISTS reprocess_runs (
            run_id bigserial PRIMARY KEY,
            started_at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL CHECK (actor <> ''),
            reason text NOT NULL CHECK (reason <> ''),
            selection jsonb NOT NULL,
            summary jsonb NOT NULL DEFAULT '{}'
        )""",
        """
        CREATE TABLE IF NOT EXISTS reading_versions (
            run_id bigint NOT NULL REFERENCES reprocess_runs (run_id),
            change text NOT NULL CHECK (change IN ('changed', 'added', 'removed')),
            patient_id text NOT NULL,
            old_key text NULL,
            old_time timestamptz NULL,
            new_key text NULL,
            new_time timestamptz NULL,
            diff jsonb NOT NULL,
            CHECK ((old_key IS NULL) = (change = 'added')),
            CHECK ((new_key IS NULL) = (change = 'removed'))
        )""",
        "CREATE INDEX IF NOT EXISTS reading_versions_old ON reading_versions (old_key)",
        "CREATE INDEX IF NOT EXISTS reading_versions_new ON reading_versions (new_key)",
        "CREATE INDEX IF NOT EXISTS reading_versions_run ON reading_versions (run_id)",
        "ALTER TABLE clinical_alerts ADD COLUMN IF NOT EXISTS entered_in_error boolean "
        "NOT NULL DEFAULT false",
    ]
    if mode == "timescaledb":
        out += [
            "DROP MATERIALIZED VIEW IF EXISTS readings_daily",
            "DROP MATERIALIZED VIEW IF EXISTS readings_hourly",
        ]
    out += lifecycle.aggregates(mode, current_only=True)
    if mode == "timescaledb":
        out += lifecycle.aggregate_policies()
    return out
