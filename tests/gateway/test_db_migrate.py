"""Migrations: both storage modes, idempotence, partitions, the advisory lock."""

from __future__ import annotations

import importlib
import logging
import threading
from datetime import UTC, datetime

import psycopg
import pytest

from gateway.db import (
    MIGRATIONS,
    MigrationError,
    ensure_partitions,
    existing_mode,
    migrate,
)
from gateway.db.migrate import timescale_available
from gateway.db.readings import (
    COPY_TYPES,
    READINGS_COLUMNS_DDL,
    READINGS_INSERT_COLUMNS,
    NormalizedReading,
)
from gateway.db.schema import (
    CHUNK_INTERVAL,
    MIGRATION_LOCK_KEY,
    TIMESCALE_EXTENSION_SQL,
    readings_statements,
)

TABLES = {
    "orgs", "api_tokens", "patients", "care_relations", "hubs", "devices", "readings",
    "dead_letters", "rules", "alerts", "webhooks", "alert_deliveries", "schema_migrations",
    # migration 10: clinical alerting
    "alert_rule_versions", "clinical_alerts", "alert_occurrences", "alert_event",
    "patient_suppressions",
    "fhir_outbox", "fhir_push_state",  # migration 30 (FHIR push)
    "audit_events",
    "email_recipients", "event_deliveries",  # migration 90 (alert event delivery)
    "held_records", "technical_alerts",  # migration 91 (held records)
    "reprocess_runs", "reading_versions",  # migration 92 (reading versions)
    "consents",  # migration 94 (care relations: the renamed patient_access, now a view)
    "adherence_slots",  # migration 96 (A1)
    "escalation_policies", "alert_escalation_policy", "alert_escalations",  # migration 97
    "system_contexts",  # migration 98 (row-level security)
}  # fmt: skip
#: what the lifecycle migrations add on plain PostgreSQL
PARTITIONED_TABLES = TABLES | {
    "telehub_retention", "telehub_job_runs", "telehub_aggregate_state", "readings_hourly_mat",
    "readings_daily_mat",
}  # fmt: skip


migrate_mod = importlib.import_module(
    "gateway.db.migrate"
)  # the module (gateway.db.migrate is the function)

V1_READINGS_COLUMNS = """
    time timestamptz NOT NULL,
    key text NOT NULL,
    patient_id text NOT NULL,
    hub_id text NOT NULL,
    device_id text NOT NULL,
    source text NOT NULL,
    kind text NOT NULL,
    mdc integer NOT NULL,
    loinc text[] NOT NULL,
    unit text NOT NULL,
    mdc_unit integer NOT NULL,
    value numeric NULL,
    special text NULL,
    orig_value numeric NULL,
    orig_unit text NULL,
    panel integer NULL,
    grp text NOT NULL,
    flags text[] NOT NULL,
    time_source text NOT NULL,
    device_time text NULL,
    received_at timestamptz NOT NULL,
    hub_clock text NOT NULL,
    sequence integer NULL,
    user_id integer NULL,
    raw bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT readings_key_time UNIQUE (key, time)
"""


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
    ).fetchall()
    return {r[0] for r in rows}


def _partitions(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass "
        "ORDER BY c.relname"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _month(year: int, month: int, delta: int) -> tuple[int, int]:
    m = year * 12 + (month - 1) + delta
    return m // 12, m % 12 + 1


def _expected_partitions(now: datetime) -> list[tuple[str, str]]:
    out = []
    for d in range(-2, 4):
        y, m = _month(now.year, now.month, d)
        y2, m2 = _month(now.year, now.month, d + 1)
        out.append(
            (
                f"readings_p{y:04d}_{m:02d}",
                f"FOR VALUES FROM ('{y:04d}-{m:02d}-01 00:00:00+00') TO "
                f"('{y2:04d}-{m2:02d}-01 00:00:00+00')",
            )
        )
    return sorted([*out, ("readings_default", "DEFAULT")])


def _timescale_installed(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return timescale_available(conn)


def test_auto_mode_is_what_the_server_offers(fresh_db: str) -> None:
    """``auto`` picks TimescaleDB where it works and the fallback elsewhere; either way the mode
    is read back the same, and running again changes nothing."""
    mode = migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        assert existing_mode(conn) == mode
        if not timescale_available(conn):
            assert mode == "partitioned"
        assert _tables(conn) >= TABLES
    assert migrate(fresh_db) == mode


def test_partitioned_mode_and_migrate_is_idempotent(fresh_db: str) -> None:
    assert migrate(fresh_db, prefer="partitioned") == "partitioned"
    with psycopg.connect(fresh_db, options="-c timezone=UTC") as conn:
        assert _tables(conn) == PARTITIONED_TABLES
        parts = _partitions(conn)
        versions = conn.execute("SELECT version, description FROM schema_migrations").fetchall()
    assert parts == _expected_partitions(datetime.now(UTC))
    assert versions == [(m.version, m.description) for m in MIGRATIONS]

    assert migrate(fresh_db) == "partitioned"  # second run: nothing changes, mode read back
    with psycopg.connect(fresh_db, options="-c timezone=UTC") as conn:
        assert _partitions(conn) == parts
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )
        assert existing_mode(conn) == "partitioned"


def _not_preloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server of a TimescaleDB package that is not in ``shared_preload_libraries``: the
    extension is listed as available, and CREATE EXTENSION ends the session with FATAL. Played
    here by a statement that makes the real server terminate the probing backend."""
    monkeypatch.setattr(migrate_mod, "timescale_available", lambda conn: True)
    monkeypatch.setattr(
        migrate_mod, "TIMESCALE_EXTENSION_SQL", "SELECT pg_terminate_backend(pg_backend_pid())"
    )


def test_installed_but_not_preloaded_falls_back_cleanly(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if _timescale_installed(fresh_db):
        pytest.skip("this server has TimescaleDB: the auto test covers it")
    _not_preloaded(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="gateway.db.migrate"):
        assert migrate(fresh_db) == "partitioned"
    assert any("not preloaded" in r.getMessage() for r in caplog.records)
    with psycopg.connect(fresh_db) as conn:
        assert _tables(conn) == PARTITIONED_TABLES
        assert existing_mode(conn) == "partitioned"
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_installed_but_not_preloaded_fails_clearly_when_asked_for(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _timescale_installed(fresh_db):
        pytest.skip("this server has TimescaleDB: the auto test covers it")
    _not_preloaded(monkeypatch)
    with pytest.raises(MigrationError, match="shared_preload_libraries"):
        migrate(fresh_db, prefer="timescaledb")
    with psycopg.connect(fresh_db) as conn:
        assert existing_mode(conn) is None  # nothing half-made


def test_timescaledb_asked_for_but_absent_fails_clearly(fresh_db: str) -> None:
    if _timescale_installed(fresh_db):
        pytest.skip("this server has TimescaleDB")
    with pytest.raises(MigrationError, match="not in pg_available_extensions"):
        migrate(fresh_db, prefer="timescaledb")


def test_readings_ddl_is_the_one_that_shipped() -> None:
    """Migration 1's column list is derived from gateway.db.readings; it must stay what shipped
    (a new field needs its own migration, not an edit of migration 1)."""
    assert READINGS_COLUMNS_DDL == V1_READINGS_COLUMNS
    assert NormalizedReading.__struct_fields__ == READINGS_INSERT_COLUMNS
    assert len(COPY_TYPES) == len(READINGS_INSERT_COLUMNS)


_COLS = (
    "time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc, unit, mdc_unit, "
    "value, grp, flags, time_source, received_at, hub_clock, raw"
)
_INSERT = (
    f"INSERT INTO readings ({_COLS}) VALUES (%s, %s, 'p', 'h', 'd', 's', 'spot', 150456, "
    "'{}', '%%', 262688, %s, 'g', '{}', 'hub', %s, 'unknown', '\\x00')"
)


def test_readings_unique_key_time_and_precision(fresh_db: str) -> None:
    migrate(fresh_db, prefer="partitioned")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(_INSERT, ("2024-01-01Z", "k1", "2.00", "2024-01-01Z"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(_INSERT, ("2024-01-01Z", "k1", "3", "2024-01-01Z"))
        conn.execute(_INSERT, ("2024-01-02Z", "k1", "3", "2024-01-01Z"))  # other time: allowed
        rows = conn.execute(
            "SELECT key, value::text, tableoid::regclass::text FROM readings ORDER BY time"
        ).fetchall()
    assert rows == [("k1", "2.00", "readings_default"), ("k1", "3", "readings_default")]


def test_partition_creation_moves_rows_out_of_default(fresh_db: str) -> None:
    """A month that had no partition (rows in DEFAULT) gets one later: the rows move into it."""
    migrate(fresh_db, prefer="partitioned")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for key, t in (("a", "2030-06-10Z"), ("b", "2030-06-20Z"), ("c", "2030-08-01Z")):
            conn.execute(_INSERT, (t, key, "97", t))
        created = conn.execute("SELECT telehub_ensure_partitions(0, 0, '2030-06-15Z')").fetchone()
        assert created == (1,)
        rows = conn.execute(
            "SELECT key, tableoid::regclass::text FROM readings ORDER BY key"
        ).fetchall()
        assert rows == [
            ("a", "readings_p2030_06"),
            ("b", "readings_p2030_06"),
            ("c", "readings_default"),
        ]
        # and it is idempotent
        assert conn.execute("SELECT telehub_ensure_partitions(0, 0, '2030-06-15Z')").fetchone() == (
            0,
        )
        assert ensure_partitions(conn) == 0


def test_timescale_statements() -> None:
    stmts = readings_statements("timescaledb")
    joined = "\n".join(stmts)
    assert TIMESCALE_EXTENSION_SQL == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert "PARTITION BY" not in joined
    assert "CREATE TABLE IF NOT EXISTS readings (" in stmts[0]
    assert "CONSTRAINT readings_key_time UNIQUE (key, time)" in stmts[0]
    assert stmts[1] == (
        "SELECT create_hypertable('readings', 'time', "
        f"chunk_time_interval => INTERVAL '{CHUNK_INTERVAL}', if_not_exists => TRUE)"
    )
    assert "readings_patient_time ON readings (patient_id, time DESC)" in joined
    assert "BEGIN RETURN 0; END" in stmts[-1]  # partition maintenance is a no-op there


def test_migrate_waits_for_the_advisory_lock(fresh_db: str) -> None:
    """While another session holds the migration lock, migrate() blocks; then it proceeds."""
    with psycopg.connect(fresh_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(migrate(fresh_db, prefer="partitioned")))
        t.start()
        t.join(1.0)
        assert t.is_alive() and result == []
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        t.join(20)
    assert result == ["partitioned"]


def test_concurrent_migrations_do_not_race(fresh_db: str) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh_db, prefer="partitioned"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and results == ["partitioned"] * 3
