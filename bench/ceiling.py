"""The database ceiling: binary COPY of the same readings straight into ``readings``, no MQTT.

The rows are exactly what the ingester would insert (every reading goes through
:func:`gateway.ingest.validate.check_reading`). They are turned into PostgreSQL's binary COPY
stream before the clock starts (loaded once into a scratch table and exported with ``COPY ... TO
STDOUT (FORMAT BINARY)``, one stream per batch), so the timed part is only the server's work:
parsing the binary tuples, the partition routing, the heap and the three indexes (the unique
``(key, time)``, ``(patient_id, time)``, ``(hub_id, time)``), WAL and the commit — with
``synchronous_commit`` as the server has it.

Two shapes are timed and the faster one is *the* ceiling:

* ``batched``: one transaction per ``batch`` rows (the ingester's ``batch_max_readings``);
* ``single``: all rows in one COPY and one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from bench import env
from bench.generate import Workload
from gateway.db.readings import COPY_TYPES, READINGS_INSERT_COLUMNS
from gateway.ingest.model import NormalizedReading
from gateway.ingest.validate import check_reading

_COLS = ", ".join(READINGS_INSERT_COLUMNS)


def rows(workload: Workload) -> Iterator[tuple[object, ...]]:
    now = datetime.now(UTC)
    for hub, raw in workload.all_readings():
        r = check_reading(msgspec.Raw(raw), hub, now=now, max_future_skew=timedelta(days=1))
        if not isinstance(r, NormalizedReading):
            raise env.BenchError(f"a generated reading does not validate: {r.reason}")
        yield r.row()


def _export(conn: psycopg.Connection[Any], workload: Workload, batch: int) -> list[bytes]:
    """Binary COPY streams of ``batch`` rows each (untimed preparation)."""
    cols = ", ".join(f"{c} {t}" for c, t in zip(READINGS_INSERT_COLUMNS, COPY_TYPES, strict=True))
    conn.execute(f"CREATE TEMP TABLE bench_src (n serial, {cols})".encode())
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY bench_src ({_COLS}) FROM STDIN (FORMAT BINARY)".encode()) as copy,
    ):
        copy.set_types(list(COPY_TYPES))
        for row in rows(workload):
            copy.write_row(row)
    total = workload.total
    streams: list[bytes] = []
    for lo in range(0, total, batch):
        buf = bytearray()
        with (
            conn.cursor() as cur,
            cur.copy(
                f"COPY (SELECT {_COLS} FROM bench_src WHERE n > {lo} AND n <= {lo + batch} "
                "ORDER BY n) TO STDOUT (FORMAT BINARY)".encode()
            ) as copy,
        ):
            for chunk in copy:
                buf += chunk
        streams.append(bytes(buf))
    conn.execute("DROP TABLE bench_src")
    conn.commit()
    return streams


def _copy(conn: psycopg.Connection[Any], streams: list[bytes]) -> None:
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(f"COPY readings ({_COLS}) FROM STDIN (FORMAT BINARY)".encode()) as copy,
    ):
        for s in streams:
            copy.write(s)


def _copy_each(conn: psycopg.Connection[Any], streams: list[bytes]) -> None:
    for s in streams:
        _copy(conn, [s])


def _single_stream(streams: list[bytes]) -> list[bytes]:
    """One binary stream of all rows: the first header, every body, one trailer."""
    header = 19  # signature (11) + flags (4) + header extension length (4), no extension
    bodies = [s[header:-2] for s in streams]
    return [streams[0][:header] + b"".join(bodies) + b"\xff\xff"]


def run_ceiling(dsn: str, workload: Workload, *, batch: int = 5000) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        streams = _export(conn, workload, batch)
    total = workload.total
    out: dict[str, Any] = {
        "readings": total,
        "batch": batch,
        "stream_bytes": sum(len(s) for s in streams),
    }
    for shape, fn, data in (
        ("batched", _copy_each, streams),
        ("single", _copy, _single_stream(streams)),
    ):
        env.reset(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.monotonic()
            fn(conn, data)
            seconds = time.monotonic() - t0
        stored = env.count_readings(dsn)
        if stored != total:
            raise env.BenchError(f"ceiling ({shape}): {stored} rows stored, {total} copied")
        out[shape] = {"seconds": round(seconds, 3), "readings_per_s": round(total / seconds, 1)}
    out["readings_per_s"] = max(out["batched"]["readings_per_s"], out["single"]["readings_per_s"])
    return out
