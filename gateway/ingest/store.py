"""Storage of one batch in one transaction.

1. The accepted readings, deduplicated, in one of two ways:

   *optimistic* (the usual case: nothing of the batch is stored yet): ``COPY readings ...
   (FORMAT BINARY)`` straight into the table, typed explicitly so numerics keep their scale (2.00
   stays 2.00); every row was stored now. Readings that occur twice in the batch are copied once.
   If a reading was already stored (a redelivery, a device replaying its memory), the unique
   index ``(key, time)`` refuses the COPY, the transaction is rolled back and the batch is written
   again the *careful* way; the next ``CAREFUL_AFTER_DUPLICATE`` batches then go the careful way
   directly (a replay storm does not pay twice per batch);

   *careful*: ``COPY`` into the session's TEMP staging table (``ON COMMIT DELETE ROWS``), then
   ``INSERT INTO readings SELECT ... FROM staging ON CONFLICT (key, time) DO NOTHING RETURNING
   key, time``: what comes back was stored now, everything else was a duplicate (already stored
   earlier, or twice in this batch) and is counted, not stored.

   The optimistic way is the COPY of the database ceiling (docs/performance.md); the careful way
   costs the server a second write of every row and the client a result row per reading.
2. Dead letters (``dead_letters`` rows), hub statuses (:mod:`gateway.ingest.presence`; a status
   of an unknown hub becomes a dead letter here), ``hubs.last_seen`` of the hubs that sent
   valid readings messages and ``devices.last_seen`` of the devices whose readings were accepted
   (one set-based UPDATE each, and for each row at most every ``LAST_SEEN_RESOLUTION``).
3. Held records (no patient, :mod:`gateway.ingest.held`) by key, each hub's technical alert.
4. Alerts for the newly inserted readings only (:mod:`gateway.ingest.alerting`).

The caller commits (by leaving the transaction) and only then publishes receipts and acks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from gateway.alerting import store as clinical
from gateway.db.readings import COPY_TYPES, READINGS_INSERT_COLUMNS
from gateway.ingest.alerting import AlertOutcome, raise_alerts
from gateway.ingest.held import HeldItem, store_held
from gateway.ingest.model import DeadLetter, NormalizedReading, Reject
from gateway.ingest.presence import StatusUpdate, apply_status

STAGING: Final = "staging_readings"
#: After a batch met an already-stored reading, this many batches skip the optimistic COPY.
CAREFUL_AFTER_DUPLICATE: Final = 20
#: ``hubs.last_seen``/``devices.last_seen`` are written at most this often per row and ingester.
LAST_SEEN_RESOLUTION: Final = timedelta(seconds=10)

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
    held: list[HeldItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: frozenset[tuple[str, datetime]]
    dead: tuple[DeadLetter, ...]  # all dead letters written (batch's + unknown-hub statuses)
    statuses_applied: int
    alerts: AlertOutcome
    careful: bool = False  # the readings went the careful way (staging + ON CONFLICT)
    held_inserted: frozenset[str] = frozenset()  # keys of held records stored now


class WriteMode:
    """What one ingester remembers across batches: which way the next batch's readings go (see
    the module docstring), and the ``last_seen`` values it wrote (see :func:`_last_seen`)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        #: "now" for the alert lifecycle (a simulated clock in ``telehub rules test``)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.careful_left = 0
        self.optimistic_failed = 0  # batches written twice because of a duplicate
        self.hubs_written: dict[str, float] = {}  # hub -> monotonic time of its last write
        self.devices_written: dict[tuple[str, str], datetime] = {}  # -> last value written

    @property
    def optimistic(self) -> bool:
        return self.careful_left == 0


async def prepare_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the session's staging table (once per connection, outside a transaction)."""
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} "
        "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


async def _copy_readings(
    conn: psycopg.AsyncConnection[Any], readings: Sequence[NormalizedReading]
) -> frozenset[tuple[str, datetime]]:
    """The optimistic way: COPY straight into ``readings`` (UniqueViolation on a duplicate)."""
    seen: set[tuple[str, datetime]] = set()
    async with (
        conn.cursor() as cur,
        cur.copy(f"COPY readings ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(list(COPY_TYPES))
        for r in readings:
            k = (r.key, r.time)
            if k not in seen:  # twice in this batch: copied once
                seen.add(k)
                await copy.write_row(r.row())
    return frozenset(seen)


async def _insert_readings(
    conn: psycopg.AsyncConnection[Any], readings: Sequence[NormalizedReading]
) -> frozenset[tuple[str, datetime]]:
    """The careful way: staging table, INSERT ... ON CONFLICT DO NOTHING RETURNING."""
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


@dataclass(frozen=True, slots=True)
class _Seen:
    """The ``last_seen`` writes of one batch, remembered once it is committed."""

    at: float
    hubs: tuple[str, ...] = ()
    devices: tuple[tuple[tuple[str, str], datetime], ...] = ()


async def _last_seen(
    conn: psycopg.AsyncConnection[Any], batch: BatchWrite, mode: WriteMode
) -> _Seen:
    """``hubs.last_seen`` and ``devices.last_seen``, each row written at most every
    ``LAST_SEEN_RESOLUTION`` by this ingester (a device streaming at 1 Hz would otherwise cost a
    row update per reading record, as much writing as the readings themselves): the first
    reading of a device always writes, later ones once the value moved on by the resolution."""
    now = time.monotonic()
    res = LAST_SEEN_RESOLUTION.total_seconds()
    written = mode.hubs_written
    hubs = sorted(h for h in batch.hubs_seen if now - written.get(h, -res) >= res)
    if hubs:
        await conn.execute(
            "UPDATE hubs SET last_seen = GREATEST(last_seen, now()) WHERE hub_id = ANY(%s)",
            (hubs,),
        )
    latest: dict[tuple[str, str], datetime] = {}
    for r in batch.readings:
        k = (r.hub_id, r.device_id)
        if k not in latest or r.received_at > latest[k]:
            latest[k] = r.received_at
    before = mode.devices_written
    for k in [k for k, v in latest.items() if k in before and v - before[k] < LAST_SEEN_RESOLUTION]:
        del latest[k]
    if latest:
        # one statement for all devices, rows locked in (hub, device) order
        keys = sorted(latest)
        await conn.execute(
            "UPDATE devices d SET last_seen = GREATEST(d.last_seen, LEAST(v.seen, now())) "
            "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(hub, device, seen) "
            "WHERE d.hub_id = v.hub AND d.device_id = v.device",
            ([h for h, _ in keys], [d for _, d in keys], [latest[k] for k in keys]),
        )
    return _Seen(now, tuple(hubs), tuple(latest.items()))


async def write_batch(
    conn: psycopg.AsyncConnection[Any], batch: BatchWrite, mode: WriteMode | None = None
) -> WriteResult:
    """Write ``batch`` inside one transaction (committed on return). ``mode`` remembers across
    batches whether to try the optimistic COPY (default: always try it)."""
    mode = mode or WriteMode()
    result: WriteResult | None = None
    if batch.readings and mode.optimistic:
        try:
            result, seen = await _write(conn, batch, mode, careful=False)
        except psycopg.errors.UniqueViolation:
            # already stored (the transaction is rolled back): write it again, carefully
            mode.optimistic_failed += 1
            mode.careful_left = CAREFUL_AFTER_DUPLICATE
    elif mode.careful_left:
        mode.careful_left -= 1
    if result is None:
        result, seen = await _write(conn, batch, mode, careful=True)
    # committed: remember what was written
    for h in seen.hubs:
        mode.hubs_written[h] = seen.at
    mode.devices_written.update(seen.devices)
    return result


async def _write(
    conn: psycopg.AsyncConnection[Any], batch: BatchWrite, mode: WriteMode, *, careful: bool
) -> tuple[WriteResult, _Seen]:
    async with conn.transaction():
        if careful:
            inserted = await _insert_readings(conn, batch.readings)
        else:
            inserted = await _copy_readings(conn, batch.readings)
        dead = list(batch.dead)
        applied = 0
        for item in batch.statuses:
            if await apply_status(conn, item.update):
                applied += 1
            else:
                reason = f"hub: unknown hub {item.update.hub!r}"
                payload = item.update.payload.encode()
                dead.append(
                    DeadLetter(
                        item.update.hub, item.topic, Reject("hub-unknown", reason, None, payload)
                    )
                )
        await _insert_dead(conn, dead)
        held = await store_held(conn, batch.held, mode.clock())
        seen = await _last_seen(conn, batch, mode)
        fresh = (
            batch.readings
            if not careful
            else [r for r in batch.readings if (r.key, r.time) in inserted]
        )
        alerts = await raise_alerts(conn, fresh)
        await clinical.evaluate_batch(conn, fresh, mode.clock())
    return WriteResult(inserted, tuple(dead), applied, alerts, careful, held), seen
