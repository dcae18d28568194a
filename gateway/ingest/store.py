"""Storage of one batch in one transaction.

1. ``COPY ... (FORMAT BINARY)`` the accepted readings into the session's TEMP staging table
   (``ON COMMIT DELETE ROWS``), typed explicitly so numerics keep their scale (2.00 stays 2.00).
2. ``INSERT INTO readings SELECT ... FROM staging ON CONFLICT (key, time) DO NOTHING
   RETURNING key, time``: what comes back was stored now, everything else was a duplicate
   (already stored earlier, or twice in this batch) and is counted, not stored.
3. Dead letters (``dead_letters`` rows), hub statuses (:mod:`gateway.ingest.presence`; a status
   of an unknown hub becomes a dead letter here), ``hubs.last_seen`` of the hubs that sent
   valid readings messages and ``devices.last_seen`` of the devices whose readings were accepted.
4. Alerts for the newly inserted readings only (:mod:`gateway.ingest.alerting`).

The caller commits (by leaving the transaction) and only then publishes receipts and acks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg

from gateway.db.schema import READINGS_INSERT_COLUMNS
from gateway.ingest.alerting import AlertOutcome, raise_alerts
from gateway.ingest.model import DeadLetter, NormalizedReading, Reject
from gateway.ingest.presence import StatusUpdate, apply_status

STAGING: Final = "staging_readings"

#: PostgreSQL types of READINGS_INSERT_COLUMNS, for the binary COPY.
COPY_TYPES: Final = (
    "timestamptz", "text", "text", "text", "text", "text", "text", "int4", "text[]", "text",
    "int4", "numeric", "text", "numeric", "text", "int4", "text", "text[]", "text", "text",
    "timestamptz", "text", "int4", "int4", "bytea",
)  # fmt: skip
assert len(COPY_TYPES) == len(READINGS_INSERT_COLUMNS)

_COLS = ", ".join(READINGS_INSERT_COLUMNS)


@dataclass(frozen=True, slots=True)
class StatusItem:
    topic: str
    update: StatusUpdate


@dataclass
class BatchWrite:
    """Everything one batch writes."""

    readings: list[NormalizedReading] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    statuses: list[StatusItem] = field(default_factory=list)
    hubs_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: frozenset[tuple[str, datetime]]
    dead: tuple[DeadLetter, ...]  # all dead letters written (batch's + unknown-hub statuses)
    statuses_applied: int
    alerts: AlertOutcome


async def prepare_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the session's staging table (once per connection, outside a transaction)."""
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} "
        "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


async def _insert_readings(
    conn: psycopg.AsyncConnection[Any], readings: Sequence[NormalizedReading]
) -> frozenset[tuple[str, datetime]]:
    if not readings:
        return frozenset()
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY {STAGING} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(COPY_TYPES))
            for r in readings:
                await copy.write_row(r.row())
        await cur.execute(
            f"INSERT INTO readings ({_COLS}) SELECT {_COLS} FROM {STAGING} "
            "ON CONFLICT (key, time) DO NOTHING RETURNING key, time"
        )
        return frozenset((k, t) for k, t in await cur.fetchall())


async def _insert_dead(conn: psycopg.AsyncConnection[Any], dead: Sequence[DeadLetter]) -> None:
    if not dead:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dead_letters (hub_id, topic, reading_key, reason, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(d.hub_id, d.topic, d.reject.key, d.reject.reason, d.reject.payload) for d in dead],
        )


async def _last_seen(conn: psycopg.AsyncConnection[Any], batch: BatchWrite) -> None:
    if batch.hubs_seen:
        await conn.execute(
            "UPDATE hubs SET last_seen = GREATEST(last_seen, now()) WHERE hub_id = ANY(%s)",
            (sorted(batch.hubs_seen),),
        )
    latest: dict[tuple[str, str], datetime] = {}
    for r in batch.readings:
        k = (r.hub_id, r.device_id)
        if k not in latest or r.received_at > latest[k]:
            latest[k] = r.received_at
    if latest:
        async with conn.cursor() as cur:
            await cur.executemany(
                "UPDATE devices SET last_seen = "
                "GREATEST(last_seen, LEAST(%s::timestamptz, now())) "
                "WHERE hub_id = %s AND device_id = %s",
                [(seen, hub, device) for (hub, device), seen in sorted(latest.items())],
            )


async def write_batch(conn: psycopg.AsyncConnection[Any], batch: BatchWrite) -> WriteResult:
    """Write ``batch`` inside one transaction (committed on return)."""
    async with conn.transaction():
        inserted = await _insert_readings(conn, batch.readings)
        dead = list(batch.dead)
        applied = 0
        for item in batch.statuses:
            if await apply_status(conn, item.update):
                applied += 1
            else:
                reason = f"hub: unknown hub {item.update.hub!r}"
                payload = item.update.payload.encode()
                dead.append(
                    DeadLetter(item.update.hub, item.topic, Reject("hub-unknown", reason, None,
                                                                   payload))
                )
        await _insert_dead(conn, dead)
        await _last_seen(conn, batch)
        fresh = [r for r in batch.readings if (r.key, r.time) in inserted]
        alerts = await raise_alerts(conn, fresh)
    return WriteResult(inserted, tuple(dead), applied, alerts)
