"""Migrations: both storage modes, idempotence, partitions, the advisory lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from gateway.db import MIGRATIONS, apply_migrations, ensure_partitions, existing_mode, migrate
from gateway.db.schema import (
    CHUNK_INTERVAL,
    MIGRATION_LOCK_KEY,
    TIMESCALE_EXTENSION_SQL,
    readings_statements,
)

TABLES = {
    "orgs", "api_tokens", "patients", "patient_access", "hubs", "devices", "readings",
    "dead_letters", "rules", "alerts", "webhooks", "alert_deliveries", "schema_migrations",
    "audit_events",
}  # fmt: skip


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


def test_fallback_is_chosen_here_and_migrate_is_idempotent(fresh_db: str) -> None:
    assert migrate(fresh_db) == "partitioned"
    with psycopg.connect(fresh_db, options="-c timezone=UTC") as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone() == (0,)
        assert _tables(conn) == TABLES
        parts = _partitions(conn)
        versions = conn.execute("SELECT version, description FROM schema_migrations").fetchall()
    assert parts == _expected_partitions(datetime.now(UTC))
    assert versions == [(m.version, m.description) for m in MIGRATIONS]

    assert migrate(fresh_db) == "partitioned"  # second run: nothing changes
    with psycopg.connect(fresh_db, options="-c timezone=UTC") as conn:
        assert _partitions(conn) == parts
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )
        assert existing_mode(conn) == "partitioned"


_COLS = (
    "time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc, unit, mdc_unit, "
    "value, grp, flags, time_source, received_at, hub_clock, raw"
)
_INSERT = (
    f"INSERT INTO readings ({_COLS}) VALUES (%s, %s, 'p', 'h', 'd', 's', 'spot', 150456, "
    "'{}', '%%', 262688, %s, 'g', '{}', 'hub', %s, 'unknown', '\\x00')"
)


def test_readings_unique_key_time_and_precision(fresh_db: str) -> None:
    migrate(fresh_db)
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
    migrate(fresh_db)
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


def test_timescale_path_runs_against_a_stub_create_hypertable(fresh_db: str) -> None:
    """Everything of the TimescaleDB path except the extension itself runs here: the stub records
    the create_hypertable call (and re-running is idempotent, mode read back as timescaledb)."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE hypertable_calls (rel text, col text, chunk interval, ine bool)")
        conn.execute(
            "CREATE FUNCTION create_hypertable(rel regclass, col name,"
            " chunk_time_interval interval, if_not_exists boolean) RETURNS void LANGUAGE sql AS "
            "$$ INSERT INTO hypertable_calls VALUES (rel::text, col, chunk_time_interval,"
            " if_not_exists) $$"
        )
        assert apply_migrations(conn, "timescaledb") == [m.version for m in MIGRATIONS]
        assert apply_migrations(conn, "timescaledb") == []
        assert conn.execute(
            "SELECT rel, col, chunk::text, ine FROM hypertable_calls"
        ).fetchall() == [("readings", "time", "7 days", True)]
        assert existing_mode(conn) == "timescaledb"
        assert _tables(conn) == TABLES | {"hypertable_calls"}
        assert ensure_partitions(conn) == 0
    assert migrate(fresh_db) == "timescaledb"  # an existing schema keeps its mode


def test_migrate_waits_for_the_advisory_lock(fresh_db: str) -> None:
    """While another session holds the migration lock, migrate() blocks; then it proceeds."""
    with psycopg.connect(fresh_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(migrate(fresh_db)))
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
            results.append(migrate(fresh_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and results == ["partitioned"] * 3
