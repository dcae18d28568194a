"""A generated year of spot readings for docs/operations.md: storage, compression, refresh and a
patient's 90-day trend from the raw rows against the daily aggregate, in both storage modes.

    python -m bench.year [--patients 1000] [--days 365] [--modes plain,timescaledb]

Each patient measures as a heart-failure/COPD programme asks: a weight in the morning, blood
pressure (systolic, diastolic, pulse) morning and evening, SpO2 with pulse rate in the morning —
9 readings a day, 3.3 M readings a year for 1,000 patients. The rows are generated inside the
database (``generate_series``), a month per statement, with the columns the ingester writes.

Plain PostgreSQL runs on the server at 127.0.0.1 (a database of its own, dropped after);
TimescaleDB runs in PGlite + TimescaleDB 2.23 (WASM, single-threaded: its times are not a
server's, its ratios are).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import psycopg

from gateway.db import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PATIENT = "p0007"

#: (mdc, source, unit, mdc_unit, base, spread, scale, hour of day)
METRICS = (
    (188736, "2a9d", "kg", 263875, 82, 6, 3, 7),
    (150021, "2a35", "mm[Hg]", 266016, 135, 30, 0, 8),
    (150022, "2a35", "mm[Hg]", 266016, 82, 16, 0, 8),
    (149546, "2a35", "/min", 264864, 72, 20, 0, 8),
    (150021, "2a35", "mm[Hg]", 266016, 130, 30, 0, 20),
    (150022, "2a35", "mm[Hg]", 266016, 80, 16, 0, 20),
    (149546, "2a35", "/min", 264864, 70, 20, 0, 20),
    (150456, "2a5f", "%", 262688, 95, 6, 0, 9),
    (149530, "2a5f", "/min", 264864, 74, 20, 0, 9),
)
RAW = {  # a record's bytes (size as the drivers' records; content not decoded here)
    "2a9d": "\\x0e6c3fea07010c070000",
    "2a35": "\\x1e8700520061000200ea07010c0800",
    "2a5f": "\\x005f004a00",
}


class Sql(Protocol):
    def execute(self, sql: str) -> list[list[Any]]: ...


class _Pg:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str) -> list[list[Any]]:
        cur = self.conn.execute(sql.encode())
        return [list(r) for r in cur.fetchall()] if cur.description else []


def _month_sql(patients: int, first_day: int, days: int) -> str:
    metrics = ", ".join(
        f"({m}, '{s}', '{u}', {mu}, {b}, {sp}, {sc}, {h}, '{RAW[s]}'::bytea)"
        for m, s, u, mu, b, sp, sc, h in METRICS
    )
    return f"""
    INSERT INTO readings (time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc,
        unit, mdc_unit, value, grp, flags, time_source, device_time, received_at, hub_clock, raw)
    SELECT t, md5(p || '-' || d || '-' || m.mdc || '-' || m.h), 'p' || lpad(p::text, 4, '0'),
        'hub-' || p, m.source || '-' || p, m.source, 'spot', m.mdc, '{{}}', m.unit, m.mdc_unit,
        round((m.base + m.spread * (random() - 0.5))::numeric, m.scale),
        md5(p || '-' || d || '-' || m.source || '-' || m.h), '{{}}', 'device',
        to_char(t AT TIME ZONE 'Europe/Copenhagen', 'YYYY-MM-DD"T"HH24:MI:SS'),
        t + INTERVAL '20 seconds', 'synchronized', m.raw
    FROM generate_series(1, {patients}) p
    CROSS JOIN generate_series({first_day}, {first_day + days - 1}) d
    CROSS JOIN (VALUES {metrics}) m(mdc, source, unit, mdc_unit, base, spread, scale, h, raw)
    CROSS JOIN LATERAL (SELECT date_trunc('day', now()) - d * INTERVAL '1 day'
        + m.h * INTERVAL '1 hour' + (p % 50) * INTERVAL '1 minute' AS t) tt"""


def _generate(db: Sql, patients: int, days: int) -> float:
    t = time.perf_counter()
    for first in range(1, days + 1, 30):
        db.execute(_month_sql(patients, first, min(30, days + 1 - first)))
    return time.perf_counter() - t


TREND_RAW = (
    "SELECT date_trunc('day', time, 'Europe/Copenhagen') AS day, count(value), min(value),"
    " max(value), avg(value) FROM readings WHERE patient_id = '{p}' AND mdc = 150021"
    " AND time >= now() - INTERVAL '90 days' GROUP BY 1 ORDER BY 1"
)
TREND_AGG = (
    "SELECT bucket, n, min_value, max_value, mean_value FROM readings_daily"
    " WHERE patient_id = '{p}' AND mdc = 150021 AND bucket >= now() - INTERVAL '90 days'"
    " ORDER BY bucket"
)


def _best_ms(db: Sql, sql: str, runs: int = 7) -> tuple[float, int]:
    best, n = 1e9, 0
    for _ in range(runs):
        t = time.perf_counter()
        n = len(db.execute(sql))
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 2), n


def _trends(db: Sql) -> dict[str, Any]:
    raw_ms, raw_days = _best_ms(db, TREND_RAW.format(p=PATIENT))
    agg_ms, agg_days = _best_ms(db, TREND_AGG.format(p=PATIENT))
    assert raw_days == agg_days, (raw_days, agg_days)
    return {"days": raw_days, "raw_ms": raw_ms, "aggregate_ms": agg_ms}


def plain(patients: int, days: int) -> dict[str, Any]:
    name = f"telehub_year_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"'.encode())
    dsn = psycopg.conninfo.make_conninfo(ADMIN, dbname=name)
    try:
        migrate(dsn, prefer="partitioned")
        with psycopg.connect(dsn, autocommit=True) as conn:
            db = _Pg(conn)
            db.execute(f"SELECT telehub_ensure_partitions({days // 30 + 2}, 3)")
            gen_s = _generate(db, patients, days)
            rows, size = db.execute(
                "SELECT (SELECT count(*) FROM readings), sum(pg_total_relation_size(inhrelid))"
                " FROM pg_inherits WHERE inhparent = 'readings'::regclass"
            )[0]
            db.execute("ANALYZE readings")
            t = time.perf_counter()
            db.execute("SELECT telehub_refresh_aggregates(now() - INTERVAL '400 days', now())")
            refresh_s = time.perf_counter() - t
            db.execute("ANALYZE readings_daily_mat")
            agg = db.execute("SELECT pg_total_relation_size('readings_daily_mat')")[0][0]
            return {
                "rows": rows,
                "generate_rows_per_s": round(rows / gen_s),
                "partitions": db.execute(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
                )[0][0],
                "bytes_per_row_with_indexes": round(int(size) / rows),
                "total_mb": round(int(size) / 2**20),
                "refresh_year_s": round(refresh_s, 1),
                "daily_aggregate_mb": round(int(agg) / 2**20, 1),
                "trend_90d": _trends(db),
            }
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


#: ``--variant`` for the TimescaleDB run: the shipped settings, or an alternative (set before
#: the rows are generated) whose figures docs/operations.md compares
VARIANTS: Final = {
    "shipped": [],
    "no-segmentby": [
        "ALTER TABLE readings SET (timescaledb.compress_segmentby = '',"
        " timescaledb.compress_orderby = 'patient_id, mdc, time DESC')"
    ],
    "chunk-7d": ["SELECT set_chunk_time_interval('readings', INTERVAL '7 days')"],
    "chunk-30d": ["SELECT set_chunk_time_interval('readings', INTERVAL '30 days')"],
}


def timescaledb(patients: int, days: int, variant: str = "shipped") -> dict[str, Any]:
    from gateway.db.schema import MIGRATIONS, TIMESCALE_EXTENSION_SQL
    from tests.fixtures.fix_pglite import Pglite

    data = Path(tempfile.mkdtemp(prefix="telehub-year-"))
    db = Pglite(data)  # on disk: a year does not fit WASM memory comfortably
    try:
        db.exec(TIMESCALE_EXTENSION_SQL)
        for m in MIGRATIONS:
            for stmt in m.statements("timescaledb"):
                db.execute(stmt)
        for stmt in VARIANTS[variant]:
            db.execute(stmt)
        gen_s = _generate(db, patients, days)
        rows = int(db.execute("SELECT count(*)::int FROM readings")[0][0])
        row_store = _trends_ts(db, "row store")
        t = time.perf_counter()
        for view in ("readings_hourly", "readings_daily"):
            db.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, now())")
        refresh_s = time.perf_counter() - t
        t = time.perf_counter()
        db.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('readings', "
            "older_than => now() - INTERVAL '35 days') c"
        )
        compress_s = time.perf_counter() - t
        before, after, chunks, compressed = db.execute(
            "SELECT sum(before_compression_total_bytes)::bigint::text,"
            " sum(after_compression_total_bytes)::bigint::text,"
            " (SELECT count(*)::int FROM show_chunks('readings')),"
            " (SELECT count(*)::int FROM timescaledb_information.chunks"
            "  WHERE hypertable_name = 'readings' AND is_compressed)"
            " FROM hypertable_columnstore_stats('readings')"
        )[0]
        total = int(db.execute("SELECT hypertable_size('readings')::bigint::text")[0][0])
        return {
            "variant": variant,
            "rows": rows,
            "generate_rows_per_s_pglite": round(rows / gen_s),
            "chunks": chunks,
            "compressed_chunks": compressed,
            "compressed_bytes_before": int(before),
            "compressed_bytes_after": int(after),
            "compression_ratio": round(int(before) / int(after), 1),
            "hypertable_mb_after": round(total / 2**20),
            "compress_s_pglite": round(compress_s, 1),
            "refresh_year_s_pglite": round(refresh_s, 1),
            "trend_90d_row_store": row_store,
            "trend_90d_compressed": _trends(db),
        }
    finally:
        db.close()
        shutil.rmtree(data, ignore_errors=True)


def _trends_ts(db: Any, _label: str) -> dict[str, Any]:
    raw_ms, days = _best_ms(db, TREND_RAW.format(p=PATIENT))
    return {"days": days, "raw_ms": raw_ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--modes", default="plain,timescaledb")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="shipped")
    a = p.parse_args()
    out: dict[str, Any] = {"patients": a.patients, "days": a.days}
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "plain": lambda: plain(a.patients, a.days),
        "timescaledb": lambda: timescaledb(a.patients, a.days, a.variant),
    }
    for mode in a.modes.split(","):
        out[mode] = runs[mode]()
        sys.stdout.write(json.dumps({mode: out[mode]}) + "\n")
        sys.stdout.flush()
    sys.stdout.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
