"""Storage figures for docs/operations.md: bytes per readings row (plain PostgreSQL, with its
indexes), the row encoder's cost, and the columnstore compression ratio and 90-day trend query
times in TimescaleDB (PGlite + TimescaleDB 2.23, tests/pglite; ``make pglite`` first).

    python -m bench.lifecycle [--homes N] [--records N]

The workload is the bench generator's (:mod:`bench.generate`): one PLX oximeter per household
streaming 1 Hz records of three readings, the heaviest data class telehub stores.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.generate import households, make_workload
from gateway.db import migrate
from gateway.db.readings import COPY_TYPES, READINGS_INSERT_COLUMNS, NormalizedReading
from gateway.ingest.validate import check_reading

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _readings(homes: int, records: int, start: datetime) -> list[NormalizedReading]:
    import msgspec

    wl = make_workload(households(homes), records, start=start)
    now = datetime.now(UTC)
    out = []
    for hub, raw in wl.all_readings():
        r = check_reading(msgspec.Raw(raw), hub, now=now, max_future_skew=timedelta(days=1))
        assert isinstance(r, NormalizedReading)
        out.append(r)
    return out


def plain_figures(readings: list[NormalizedReading]) -> dict[str, Any]:
    name = f"telehub_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(ADMIN, dbname=name)
    try:
        migrate(dsn, prefer="partitioned")
        t = time.perf_counter()
        encoded = [r.row() for r in readings]
        encode_ns = (time.perf_counter() - t) / len(readings) * 1e9
        cols = ", ".join(READINGS_INSERT_COLUMNS)
        with psycopg.connect(dsn) as conn:
            t = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY readings ({cols}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.set_types(list(COPY_TYPES))
                for row in encoded:
                    cp.write_row(row)
            conn.commit()
            copy_s = time.perf_counter() - t
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits"
                " WHERE inhparent = 'readings'::regclass"
            ).fetchone()
        assert size is not None
        return {
            "rows": len(readings),
            "bytes_per_row_with_indexes": round(int(size[0]) / len(readings)),
            "row_encode_ns": round(encode_ns),
            "copy_rows_per_s": round(len(readings) / copy_s),
        }
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timescale_figures(readings: list[NormalizedReading]) -> dict[str, Any]:
    from gateway.db.schema import MIGRATIONS, TIMESCALE_EXTENSION_SQL
    from tests.fixtures.fix_pglite import Pglite

    db = Pglite()
    try:
        db.exec(TIMESCALE_EXTENSION_SQL)
        for m in MIGRATIONS:
            for stmt in m.statements("timescaledb"):
                db.execute(stmt)
        cols = READINGS_INSERT_COLUMNS
        t = time.perf_counter()
        for i in range(0, len(readings), 5000):
            batch = [
                {
                    c: (("\\x" + v.hex()) if isinstance(v, bytes) else v)
                    for c, v in zip(cols, r.row(), strict=True)
                }
                for r in readings[i : i + 5000]
            ]
            db.execute(
                f"INSERT INTO readings ({', '.join(cols)}) SELECT {', '.join(cols)}"
                " FROM jsonb_populate_recordset(NULL::readings, %s::jsonb)",
                [json.dumps(batch, default=str)],
            )
        insert_s = time.perf_counter() - t
        patient = readings[0].patient_id
        trend_raw = (
            "SELECT date_trunc('day', time), count(value), min(value), max(value), avg(value)"
            " FROM readings WHERE patient_id = %s AND mdc = 150456"
            " AND time >= now() - INTERVAL '90 days' GROUP BY 1"
        )
        trend_agg = (
            "SELECT bucket, n, min_value, max_value, mean_value FROM readings_daily"
            " WHERE patient_id = %s AND mdc = 150456 AND bucket >= now() - INTERVAL '90 days'"
        )

        def timed(sql: str) -> float:
            best = 1e9
            for _ in range(5):
                t0 = time.perf_counter()
                db.execute(sql, [patient])
                best = min(best, time.perf_counter() - t0)
            return round(best * 1000, 1)

        raw_row = timed(trend_raw)
        for view in ("readings_hourly", "readings_daily"):
            db.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        agg_ms = timed(trend_agg)
        db.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
        raw_compressed = timed(trend_raw)
        stats = db.execute(
            "SELECT sum(before_compression_total_bytes)::bigint::text,"
            " sum(after_compression_total_bytes)::bigint::text,"
            " (SELECT count(*)::int FROM show_chunks('readings'))"
            " FROM hypertable_columnstore_stats('readings')"
        )[0]
        return {
            "rows": len(readings),
            "insert_rows_per_s_pglite": round(len(readings) / insert_s),
            "chunks": stats[2],
            "bytes_before": int(stats[0]),
            "bytes_after": int(stats[1]),
            "compression_ratio": round(int(stats[0]) / int(stats[1]), 1),
            "trend_90d_raw_rowstore_ms": raw_row,
            "trend_90d_raw_compressed_ms": raw_compressed,
            "trend_90d_daily_aggregate_ms": agg_ms,
        }
    finally:
        db.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--homes", type=int, default=20)
    p.add_argument("--records", type=int, default=2000)
    a = p.parse_args()
    start = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    readings = _readings(a.homes, a.records, start)
    print(json.dumps({"plain": plain_figures(readings)}, indent=1), flush=True)
    print(json.dumps({"timescaledb": timescale_figures(readings)}, indent=1))


if __name__ == "__main__":
    main()
