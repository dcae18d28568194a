"""Apply the versioned migrations of :mod:`gateway.db.schema`.

``migrate(dsn)`` is safe to call from every process at start-up: it takes a session advisory lock
(so two processes never migrate at the same time), applies each missing version in its own
transaction (recording it in ``schema_migrations``), then creates the partitions around the current
month. Calling it again changes nothing.

Choice of storage mode on a new database: TimescaleDB when ``timescaledb`` is listed in
``pg_available_extensions`` and ``CREATE EXTENSION`` succeeds on a connection of its own (it fails,
closing that connection, when the library is not in ``shared_preload_libraries``; then the fallback
is used on the migration's own connection and a warning logged; ``prefer="timescaledb"`` fails
with a clear :class:`MigrationError` instead), else native partitioning. On an existing database
the mode is read back from ``readings`` (a partitioned table is ``relkind = 'p'``), so a later
install of TimescaleDB does not change an existing schema.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import psycopg

from gateway.db.schema import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    MONTHS_AHEAD,
    MONTHS_BACK,
    TIMESCALE_EXTENSION_SQL,
    StorageMode,
)

log = logging.getLogger(__name__)

StoragePreference = Literal["auto", "timescaledb", "partitioned"]


class MigrationError(Exception):
    """The schema could not be brought up to date."""


def existing_mode(conn: psycopg.Connection[Any]) -> StorageMode | None:
    """The storage mode of an already-created ``readings`` table, or None if there is none."""
    row = conn.execute(
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('readings')"
    ).fetchone()
    if row is None:
        return None
    return "partitioned" if row[0] == "p" else "timescaledb"


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None and int(row[0]) > 0


def _create_extension(dsn: str, connect_timeout: int) -> str | None:
    """Run ``CREATE EXTENSION timescaledb`` on a connection of its own; None on success, else the
    error. Its own connection because a server that has the package but not the preloaded library
    fails it with FATAL and closes the connection: the migration's connection (holding the lock)
    must not be the one that goes down."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as probe:
            probe.execute(TIMESCALE_EXTENSION_SQL)
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip() or 'connection lost'}"
    return None


def _choose_mode(
    conn: psycopg.Connection[Any], dsn: str, prefer: StoragePreference, connect_timeout: int
) -> StorageMode:
    found = existing_mode(conn)
    if found is not None:
        if prefer not in ("auto", found):
            raise MigrationError(f"readings already exists in {found} mode, {prefer} was asked for")
        return found
    if prefer == "partitioned":
        return "partitioned"
    if not timescale_available(conn):
        if prefer == "timescaledb":
            raise MigrationError(
                "TimescaleDB was asked for but timescaledb is not in pg_available_extensions "
                "(install the TimescaleDB package for this PostgreSQL)"
            )
        return "partitioned"
    error = _create_extension(dsn, connect_timeout)
    if error is not None:
        if prefer == "timescaledb":
            raise MigrationError(
                f"TimescaleDB was asked for but CREATE EXTENSION timescaledb failed ({error}); "
                "is timescaledb in shared_preload_libraries?"
            )
        log.warning(
            "timescaledb is available but CREATE EXTENSION failed (not preloaded?); "
            "using native partitioning"
        )
        return "partitioned"
    return "timescaledb"


def applied_versions(conn: psycopg.Connection[Any]) -> set[int]:
    rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    return {int(r[0]) for r in rows}


def apply_migrations(conn: psycopg.Connection[Any], mode: StorageMode) -> list[int]:
    """Apply the missing migrations for ``mode``; returns the versions applied now.

    ``conn`` must be in autocommit mode and the caller must hold the migration lock.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now(),"
        " description text)"
    )
    done = applied_versions(conn)
    applied: list[int] = []
    for m in MIGRATIONS:
        if m.version in done:
            continue
        with conn.transaction():
            for stmt in m.statements(mode):
                conn.execute(stmt.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (m.version, m.description),
            )
        log.info("applied schema migration %d (%s, %s)", m.version, m.description, mode)
        applied.append(m.version)
    return applied


def ensure_partitions(
    conn: psycopg.Connection[Any],
    months_back: int = MONTHS_BACK,
    months_ahead: int = MONTHS_AHEAD,
) -> int:
    """Create missing monthly partitions around now (no-op under TimescaleDB); returns the count."""
    with conn.transaction():
        row = conn.execute(
            "SELECT telehub_ensure_partitions(%s, %s)", (months_back, months_ahead)
        ).fetchone()
    return int(row[0]) if row is not None else 0


def run_lifecycle(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """On plain PostgreSQL: refresh the aggregates and apply retention per data class
    (``telehub_lifecycle_run()``, see :mod:`gateway.db.lifecycle`); returns what it did. Under
    TimescaleDB its own job scheduler does this; returns None."""
    if existing_mode(conn) != "partitioned":
        return None
    with conn.transaction():
        row = conn.execute("SELECT telehub_lifecycle_run()").fetchone()
    return dict(row[0]) if row is not None else None


def migrate(dsn: str, *, prefer: StoragePreference = "auto", connect_timeout: int = 10) -> str:
    """Bring the database at ``dsn`` to the latest schema; returns the storage mode,
    ``"timescaledb"`` or ``"partitioned"``."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        # the owner is bound by the forced row-level security too (gateway.db.rls)
        conn.execute("SELECT set_config('telehub.system', 'migrate', false)")
        try:
            mode = _choose_mode(conn, dsn, prefer, connect_timeout)
            apply_migrations(conn, mode)
            created = ensure_partitions(conn)
            if created:
                log.info("created %d readings partitions", created)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return mode
