"""The central schema (team SCHEMA.md) as versioned migrations.

Every migration is a version number, a description and a function of the storage mode that
returns its SQL statements, so the statements of both storage modes can be inspected (and tested)
without a server that has TimescaleDB.

Storage modes for ``readings``:

``timescaledb``
    a plain table turned into a hypertable on ``time`` (7-day chunks in migration 1, 1-day chunks
    from migration 42 on); TimescaleDB creates chunks as rows arrive, so
    :func:`ensure_partitions_sql` is a no-op function in this mode.
``partitioned``
    ``PARTITION BY RANGE (time)`` with one partition per UTC calendar month
    (``readings_pYYYY_MM``) and a ``readings_default`` partition for anything outside the months
    that exist (history re-sent by a device long after the fact, far-future clocks). The SQL
    function ``telehub_ensure_partitions(months_back, months_ahead, at)`` creates the monthly
    partitions around ``at`` that do not exist yet, moving any rows of that month out of the
    default partition first; the migration calls it with (2, 3) and the ingester calls it daily.

Migrations 40-43 (:mod:`gateway.db.lifecycle`) add the data lifecycle: compression, aggregates
and retention per data class in both modes. The readings columns are declared once, in
:mod:`gateway.db.readings`.

Additions to SCHEMA.md (additive only, as the contract allows):

* ``schema_migrations.description``.
* ``rules.rule_key`` (text, unique per patient): the identity of a rule declared in a fleet file,
  so that applying the file again updates the rule instead of adding a copy.
* ``webhooks`` unique ``(org_id, url)``: the identity of a webhook declared in a fleet file.
* ``alerts_one_open``: a unique partial index on ``alerts (patient_id, rule_id) WHERE
  acknowledged_at IS NULL`` — the database itself guarantees one open alert per patient and rule
  (the ingester upserts against it).
* indexes: readings ``(patient_id, time DESC)`` (the contract's) and ``(hub_id, time DESC)``,
  devices ``(patient_id)``, rules ``(patient_id) WHERE enabled``, alerts
  ``(patient_id, raised_at DESC)``, dead_letters ``(received_at DESC)`` and ``(hub_id, id)``,
  alert_deliveries ``(next_attempt_at) WHERE delivered_at IS NULL``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from gateway.db import adherence, consent, escalation, lifecycle, rls, versions
from gateway.db.readings import READINGS_COLUMNS_DDL, READINGS_INSERT_COLUMNS

__all__ = ["READINGS_INSERT_COLUMNS"]  # re-exported: the column order lives in gateway.db.readings

StorageMode = Literal["timescaledb", "partitioned"]

#: pg_advisory_lock key held while migrating (any constant; "telehub" in ASCII, truncated).
MIGRATION_LOCK_KEY: Final = 0x74656C6568756201
#: pg_advisory_xact_lock key held while creating partitions.
PARTITION_LOCK_KEY: Final = 0x74656C6568756202

#: TimescaleDB chunk interval of readings as created by migration 1 (migration 42 sets
#: :data:`gateway.db.lifecycle.CHUNK_INTERVAL` for the chunks after it).
CHUNK_INTERVAL: Final = "7 days"
#: Months of partitions the migration creates behind and ahead of the current month.
MONTHS_BACK: Final = 2
MONTHS_AHEAD: Final = 3

_CORE = [
    """
    CREATE TABLE IF NOT EXISTS orgs (
        org_id text PRIMARY KEY,
        name text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('hospital', 'gp', 'municipality', 'operator'))
    )""",
    """
    CREATE TABLE IF NOT EXISTS api_tokens (
        token_sha256 bytea PRIMARY KEY,
        org_id text NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
        clinician text,
        role text NOT NULL DEFAULT 'clinician' CHECK (role IN ('clinician', 'operator')),
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE IF NOT EXISTS patients (
        patient_id text PRIMARY KEY,
        display_name text
    )""",
    """
    CREATE TABLE IF NOT EXISTS patient_access (
        patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
        org_id text NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
        PRIMARY KEY (patient_id, org_id)
    )""",
    "CREATE INDEX IF NOT EXISTS patient_access_org ON patient_access (org_id)",
    """
    CREATE TABLE IF NOT EXISTS hubs (
        hub_id text PRIMARY KEY,
        org_id text NULL REFERENCES orgs (org_id) ON DELETE SET NULL,
        state text NOT NULL DEFAULT 'unknown',
        last_seen timestamptz,
        status jsonb
    )""",
    """
    CREATE TABLE IF NOT EXISTS devices (
        device_id text NOT NULL,
        hub_id text NOT NULL REFERENCES hubs (hub_id) ON DELETE CASCADE,
        patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
        model text,
        last_seen timestamptz,
        PRIMARY KEY (hub_id, device_id)
    )""",
    "CREATE INDEX IF NOT EXISTS devices_patient ON devices (patient_id)",
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id bigserial PRIMARY KEY,
        received_at timestamptz NOT NULL DEFAULT now(),
        hub_id text NULL,
        topic text,
        reading_key text NULL,
        reason text NOT NULL,
        payload bytea NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at DESC)",
    "CREATE INDEX IF NOT EXISTS dead_letters_hub ON dead_letters (hub_id, id)",
    """
    CREATE TABLE IF NOT EXISTS rules (
        rule_id bigserial PRIMARY KEY,
        patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
        mdc integer NOT NULL,
        op text NOT NULL CHECK (op IN ('<', '<=', '>', '>=')),
        threshold numeric NOT NULL,
        unit text NOT NULL,
        severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        enabled boolean NOT NULL DEFAULT true,
        description text,
        rule_key text NULL,
        UNIQUE (patient_id, rule_key)
    )""",
    "CREATE INDEX IF NOT EXISTS rules_patient ON rules (patient_id) WHERE enabled",
    """
    CREATE TABLE IF NOT EXISTS alerts (
        alert_id bigserial PRIMARY KEY,
        patient_id text NOT NULL,
        rule_id bigint NOT NULL,
        reading_key text,
        reading_time timestamptz,
        mdc integer,
        value numeric,
        unit text,
        severity text,
        message text,
        raised_at timestamptz NOT NULL DEFAULT now(),
        occurrences integer NOT NULL DEFAULT 1,
        last_value numeric,
        last_seen_at timestamptz,
        acknowledged_at timestamptz NULL,
        acknowledged_by text NULL,
        acknowledged_org text NULL
    )""",
    """
    CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (patient_id, rule_id)
        WHERE acknowledged_at IS NULL""",
    "CREATE INDEX IF NOT EXISTS alerts_patient ON alerts (patient_id, raised_at DESC)",
    """
    CREATE TABLE IF NOT EXISTS webhooks (
        webhook_id bigserial PRIMARY KEY,
        org_id text NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
        url text NOT NULL,
        secret text,
        UNIQUE (org_id, url)
    )""",
    """
    CREATE TABLE IF NOT EXISTS alert_deliveries (
        alert_id bigint NOT NULL,
        webhook_id bigint NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        delivered_at timestamptz NULL,
        last_error text,
        PRIMARY KEY (alert_id, webhook_id)
    )""",
    """
    CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (next_attempt_at)
        WHERE delivered_at IS NULL""",
]

#: Run by :func:`gateway.db.migrate` (before the migrations) when it chooses TimescaleDB.
TIMESCALE_EXTENSION_SQL: Final = "CREATE EXTENSION IF NOT EXISTS timescaledb"

_READINGS_INDEXES = [
    "CREATE INDEX IF NOT EXISTS readings_patient_time ON readings (patient_id, time DESC)",
    "CREATE INDEX IF NOT EXISTS readings_hub_time ON readings (hub_id, time DESC)",
]


def ensure_partitions_sql(mode: StorageMode) -> str:
    """``CREATE OR REPLACE FUNCTION telehub_ensure_partitions(...)`` for the storage mode.

    Returns the number of partitions created. In ``timescaledb`` mode it returns 0 (chunks are
    automatic); it exists in both modes so callers need not know the mode.
    """
    if mode == "timescaledb":
        body = "BEGIN RETURN 0; END"
    else:
        body = f"""
DECLARE
    base timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    lo timestamptz;
    hi timestamptz;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock({PARTITION_LOCK_KEY});
    FOR i IN -months_back .. months_ahead LOOP
        lo := (base + make_interval(months => i)) AT TIME ZONE 'UTC';
        hi := (base + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        part := 'readings_p' || to_char(base + make_interval(months => i), 'YYYY_MM');
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            -- rows of this month that landed in the default partition move to the new one,
            -- else ATTACH would fail on the default partition's constraint
            EXECUTE format(
                'WITH moved AS (DELETE FROM readings_default WHERE time >= %L AND time < %L '
                'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
            EXECUTE format(
                'ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, lo, hi);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END"""
    return f"""
    CREATE OR REPLACE FUNCTION telehub_ensure_partitions(
        months_back integer DEFAULT {MONTHS_BACK},
        months_ahead integer DEFAULT {MONTHS_AHEAD},
        at timestamptz DEFAULT now()
    ) RETURNS integer LANGUAGE plpgsql AS $fn$
    {body}
    $fn$"""


def readings_statements(mode: StorageMode) -> list[str]:
    """DDL for ``readings`` in the given storage mode (idempotent)."""
    if mode == "timescaledb":
        stmts = [
            f"CREATE TABLE IF NOT EXISTS readings ({READINGS_COLUMNS_DDL})",
            "SELECT create_hypertable('readings', 'time', "
            f"chunk_time_interval => INTERVAL '{CHUNK_INTERVAL}', if_not_exists => TRUE)",
        ]
    else:
        stmts = [
            f"CREATE TABLE IF NOT EXISTS readings ({READINGS_COLUMNS_DDL})"
            " PARTITION BY RANGE (time)",
            "CREATE TABLE IF NOT EXISTS readings_default PARTITION OF readings DEFAULT",
        ]
    return [*stmts, *_READINGS_INDEXES, ensure_partitions_sql(mode)]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Callable[[StorageMode], list[str]]


def _v1(mode: StorageMode) -> list[str]:
    return [*_CORE, *readings_statements(mode)]


def _v30(_mode: StorageMode) -> list[str]:
    """FHIR push outbox (docs/fhir.md): one row per device record to send, filled by the push
    worker's sweep over ``readings.stored_at`` (BRIN: cheap to maintain on the ingest path)."""
    return [
        """
        CREATE TABLE IF NOT EXISTS fhir_outbox (
            time timestamptz NOT NULL,
            hub_id text NOT NULL,
            device_id text NOT NULL,
            grp text NOT NULL,
            patient_id text NOT NULL,
            queued_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz NULL,
            outcome text NULL CHECK (outcome IN ('sent', 'skipped-test-data')),
            last_error text NULL,
            PRIMARY KEY (time, hub_id, device_id, grp)
        )""",
        """
        CREATE INDEX IF NOT EXISTS fhir_outbox_due ON fhir_outbox (next_attempt_at)
            WHERE sent_at IS NULL""",
        """
        CREATE TABLE IF NOT EXISTS fhir_push_state (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            swept_to timestamptz NOT NULL
        )""",
        # readings stored before push exists are not queued; docs/fhir.md says how to backfill
        "INSERT INTO fhir_push_state (swept_to) VALUES (now()) ON CONFLICT DO NOTHING",
        "CREATE INDEX IF NOT EXISTS readings_stored_at ON readings USING brin (stored_at)",
    ]


_LEVELS = "('red', 'yellow', 'blue', 'technical', 'info')"
_STATES = "('pending', 'open', 'acknowledged', 'resolved')"
_EVENTS = (
    "('created', 'occurrence', 'confirmed', 'severity_changed', 'acknowledged', 'assigned', "
    "'snoozed', 'resolved', 'reopened', 'invalidated', 'notified', 'escalated')"
)


def _v10(mode: StorageMode) -> list[str]:
    """Clinical alerting (docs/alerting.md): versioned rules, alerts with a lifecycle,
    occurrences and the append-only event log. Every table carries ``patient_id``."""
    return [
        "ALTER TABLE patients ADD COLUMN IF NOT EXISTS timezone text NOT NULL "
        "DEFAULT 'Europe/Copenhagen'",
        """
        CREATE OR REPLACE FUNCTION telehub_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $fn$""",
        """
        CREATE TABLE IF NOT EXISTS alert_rule_versions (
            patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
            rule_code text NOT NULL,
            version integer NOT NULL CHECK (version >= 1),
            programme text NULL,
            effective_from timestamptz NOT NULL,
            definition jsonb NOT NULL,
            enabled boolean NOT NULL,
            author text NOT NULL,
            reason text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (patient_id, rule_code, version)
        )""",
        """
        CREATE OR REPLACE TRIGGER alert_rule_versions_immutable
            BEFORE UPDATE ON alert_rule_versions
            FOR EACH ROW EXECUTE FUNCTION telehub_append_only()""",
        f"""
        CREATE TABLE IF NOT EXISTS clinical_alerts (
            alert_id bigserial PRIMARY KEY,
            patient_id text NOT NULL,
            rule_code text NOT NULL,
            rule_version integer NOT NULL,
            params jsonb NOT NULL,
            level text NOT NULL CHECK (level IN {_LEVELS}),
            state text NOT NULL CHECK (state IN {_STATES}),
            late boolean NOT NULL DEFAULT false,
            reading_key text NOT NULL,
            effective_at timestamptz NOT NULL,
            value numeric NULL,
            unit text NULL,
            message text NOT NULL,
            occurrences integer NOT NULL DEFAULT 1,
            last_effective_at timestamptz NOT NULL,
            assigned_to text NULL,
            snoozed_until timestamptz NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        """
        CREATE UNIQUE INDEX IF NOT EXISTS clinical_alerts_one_live
            ON clinical_alerts (patient_id, rule_code) WHERE state <> 'resolved'""",
        "CREATE INDEX IF NOT EXISTS clinical_alerts_patient "
        "ON clinical_alerts (patient_id, created_at DESC)",
        f"""
        CREATE TABLE IF NOT EXISTS alert_occurrences (
            alert_id bigint NOT NULL REFERENCES clinical_alerts (alert_id) ON DELETE CASCADE,
            patient_id text NOT NULL,
            reading_key text NOT NULL,
            effective_at timestamptz NOT NULL,
            value numeric NULL,
            level text NOT NULL CHECK (level IN {_LEVELS}),
            late boolean NOT NULL,
            rule_version integer NOT NULL,
            UNIQUE (alert_id, reading_key)
        )""",
        f"""
        CREATE TABLE IF NOT EXISTS alert_event (
            event_id bigserial PRIMARY KEY,
            alert_id bigint NOT NULL REFERENCES clinical_alerts (alert_id),
            patient_id text NOT NULL,
            type text NOT NULL CHECK (type IN {_EVENTS}),
            level text NULL CHECK (level IN {_LEVELS}),
            actor text NOT NULL,
            note text NULL,
            payload jsonb NOT NULL DEFAULT '{{}}',
            at timestamptz NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS alert_event_alert ON alert_event (alert_id, event_id)",
        "CREATE INDEX IF NOT EXISTS alert_event_patient ON alert_event (patient_id, event_id)",
        """
        CREATE OR REPLACE TRIGGER alert_event_append_only
            BEFORE UPDATE OR DELETE ON alert_event
            FOR EACH ROW EXECUTE FUNCTION telehub_append_only()""",
        """
        CREATE TABLE IF NOT EXISTS patient_suppressions (
            suppression_id bigserial PRIMARY KEY,
            patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL CHECK (ends_at > starts_at),
            reason text NOT NULL,
            author text NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS patient_suppressions_patient "
        "ON patient_suppressions (patient_id, starts_at)",
    ]


def _v20(_mode: StorageMode) -> list[str]:
    """API tokens expire and are revoked (kept, for the audit trail) when the fleet drops them."""
    return [
        "ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS expires_at timestamptz",
        "ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS revoked_at timestamptz",
    ]


def _v21(_mode: StorageMode) -> list[str]:
    """The audit trail of patient-data reads (allowed and denied lookups). ``patient_id`` is
    null for a denied lookup of an id that names no patient; ``target`` is the id asked for."""
    return [
        """
        CREATE TABLE IF NOT EXISTS audit_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            request_id text NOT NULL,
            actor text NOT NULL,
            org_id text NOT NULL,
            role text NOT NULL,
            patient_id text,
            resource text NOT NULL,
            target text,
            outcome text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
            range_from timestamptz,
            range_to timestamptz,
            row_count integer,
            purpose text NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS audit_events_patient ON audit_events (patient_id, at DESC)",
        "CREATE INDEX IF NOT EXISTS audit_events_org ON audit_events (org_id, at DESC)",
    ]


def _v22(_mode: StorageMode) -> list[str]:
    """An organisation's SOR id: the organisation claim of an OIDC token may name it."""
    return [
        "ALTER TABLE orgs ADD COLUMN IF NOT EXISTS sor_id text UNIQUE",
    ]


def _v90(_mode: StorageMode) -> list[str]:
    """Delivery of clinical alert events (gateway/notify/delivery.py): one row per (event,
    channel, target), fanned out by a trigger in the transaction that appends the event, so an
    event is never committed without its deliveries. Endpoints can be disabled (HTTP 410)."""
    return [
        "ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS disabled_at timestamptz",
        "ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS disabled_reason text",
        """
        CREATE TABLE IF NOT EXISTS email_recipients (
            recipient_id bigserial PRIMARY KEY,
            org_id text NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
            address text NOT NULL,
            UNIQUE (org_id, address)
        )""",
        """
        CREATE TABLE IF NOT EXISTS event_deliveries (
            delivery_id bigserial PRIMARY KEY,
            event_id bigint NOT NULL REFERENCES alert_event (event_id),
            patient_id text NOT NULL,
            org_id text NOT NULL,
            channel text NOT NULL CHECK (channel IN ('webhook', 'email')),
            target_id bigint NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz NULL,
            last_error text NULL,
            cancelled_at timestamptz NULL,
            cancel_reason text NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (event_id, channel, target_id)
        )""",
        "CREATE INDEX IF NOT EXISTS event_deliveries_due ON event_deliveries (next_attempt_at) "
        "WHERE delivered_at IS NULL AND cancelled_at IS NULL",
        """
        CREATE OR REPLACE FUNCTION telehub_event_notifiable(e alert_event) RETURNS boolean
        LANGUAGE sql STABLE AS $fn$
            SELECT coalesce((e.payload ->> 'notify')::boolean, false)
                OR (e.type IN ('resolved', 'escalated') AND EXISTS (
                    SELECT 1 FROM alert_event p WHERE p.alert_id = e.alert_id
                    AND p.event_id < e.event_id
                    AND coalesce((p.payload ->> 'notify')::boolean, false)))
        $fn$""",
        """
        CREATE OR REPLACE FUNCTION telehub_fan_out_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF NOT telehub_event_notifiable(NEW) THEN
                RETURN NULL;
            END IF;
            INSERT INTO event_deliveries (event_id, patient_id, org_id, channel, target_id)
                SELECT NEW.event_id, NEW.patient_id, w.org_id, 'webhook', w.webhook_id
                FROM webhooks w JOIN patient_access pa
                    ON pa.org_id = w.org_id AND pa.patient_id = NEW.patient_id
                WHERE w.disabled_at IS NULL
            ON CONFLICT DO NOTHING;
            -- an organisation without a working webhook is reached by e-mail directly
            INSERT INTO event_deliveries (event_id, patient_id, org_id, channel, target_id)
                SELECT NEW.event_id, NEW.patient_id, r.org_id, 'email', r.recipient_id
                FROM email_recipients r JOIN patient_access pa
                    ON pa.org_id = r.org_id AND pa.patient_id = NEW.patient_id
                WHERE NOT EXISTS (SELECT 1 FROM webhooks w
                                  WHERE w.org_id = r.org_id AND w.disabled_at IS NULL)
            ON CONFLICT DO NOTHING;
            PERFORM pg_notify('telehub_deliveries', NEW.event_id::text);
            RETURN NULL;
        END $fn$""",
        """
        CREATE OR REPLACE TRIGGER alert_event_fan_out AFTER INSERT ON alert_event
            FOR EACH ROW EXECUTE FUNCTION telehub_fan_out_event()""",
    ]


def _v91(_mode: StorageMode) -> list[str]:
    """Held records and technical alerts (gateway/ingest/held.py): device records a hub could
    attribute to no patient, kept for review, and one live technical alert per hub and kind."""
    return [
        """
        CREATE TABLE IF NOT EXISTS held_records (
            key text PRIMARY KEY,
            hub_id text NOT NULL,
            device_id text NOT NULL,
            source text NOT NULL,
            reason text NOT NULL
                CHECK (reason IN ('unknown-user', 'unmapped-user', 'queue-overflow')),
            user_id integer NULL,
            received_at timestamptz NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now(),
            raw bytea NOT NULL,
            "values" jsonb NOT NULL DEFAULT '[]',
            dismissed_at timestamptz NULL,
            dismissed_by text NULL,
            dismiss_note text NULL
        )""",
        "CREATE INDEX IF NOT EXISTS held_records_hub ON held_records (hub_id, stored_at DESC)",
        """
        CREATE TABLE IF NOT EXISTS technical_alerts (
            alert_id bigserial PRIMARY KEY,
            hub_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('held-records', 'ble-overflow', 'hub-silent')),
            count integer NOT NULL CHECK (count >= 1),
            first_at timestamptz NOT NULL,
            last_at timestamptz NOT NULL,
            state text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
            acknowledged_at timestamptz NULL,
            acknowledged_by text NULL,
            resolved_at timestamptz NULL,
            resolved_by text NULL,
            note text NULL
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS technical_alerts_one_live "
        "ON technical_alerts (hub_id, kind) WHERE state <> 'resolved'",
        "CREATE INDEX IF NOT EXISTS technical_alerts_hub ON technical_alerts (hub_id, alert_id)",
    ]


#: All migrations, in order. Append; never edit one that has shipped.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "central schema", _v1),
    Migration(10, "clinical alerting: rule versions, alert lifecycle, occurrences, events", _v10),
    Migration(20, "api token expiry and revocation", _v20),
    Migration(21, "audit events", _v21),
    Migration(22, "organisation SOR id", _v22),
    Migration(30, "FHIR push outbox", _v30),
    Migration(40, "lifecycle: retention per data class, job runs, aggregate state", lifecycle.v40),
    Migration(41, "lifecycle: hourly and daily aggregates per patient and metric", lifecycle.v41),
    Migration(42, "lifecycle: chunk interval, columnstore compression, policies", lifecycle.v42),
    Migration(43, "lifecycle: retention run (TimescaleDB job or gateway scheduler)", lifecycle.v43),
    Migration(90, "alert event deliveries: webhooks (Standard Webhooks) and e-mail", _v90),
    Migration(91, "held records (no patient) and technical alerts per hub", _v91),
    Migration(
        92,
        "reading versions: reprocess runs, superseded readings, current aggregates",
        versions.v92,
    ),
    Migration(93, "lifecycle: retention of held records (90 days)", lifecycle.v93),
    Migration(94, "care relations and consent; patient_access becomes their view", consent.v94),
    Migration(95, "columnstore ordered by patient (no segmentby): spot data", lifecycle.v95),
    Migration(96, "adherence slots (A1 missed measurement)", adherence.v96),
    Migration(97, "escalation policies, per-alert snapshots and fired steps", escalation.v97),
    Migration(98, "app roles, forced row-level security, visible readings", rls.v98),
)
