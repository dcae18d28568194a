"""The clinical alert event log as a feed: what ``GET /api/v1/worklist/stream`` sends.

``alert_event.event_id`` is the cursor everywhere (SSE ``id:``, ``Last-Event-ID``). One
``LISTEN telehub_alert_events`` per process (:class:`EventFeed`) only *wakes* the streams; each
stream then reads the log itself, from its own cursor, scoped to its organisation — so a stream
that reconnects with ``Last-Event-ID`` replays from the database and never misses an event, and a
slow client costs a cursor, not a queue.

Sequence values are taken at INSERT but become visible at COMMIT, so event 41 may appear after 42
has been read. A page that skips ids remembers them for :data:`GAP_WAIT` seconds and asks for them
again on the next reads (a rolled-back transaction leaves a gap for ever; after the wait it is
given up). Such a late event arrives after a higher id; clients upsert by ``alert_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from gateway.alerting.store import CHANNEL
from gateway.notify.listen import listen_forever

log = logging.getLogger(__name__)

GAP_WAIT: Final = 10.0
PAGE: Final = 500

_READ_SQL: Final = """
SELECT e.event_id, e.alert_id, e.patient_id, e.type, e.level AS event_level, e.actor, e.note,
       e.at, a.rule_code, a.level, a.state, a.late, a.value::text AS value, a.unit, a.message,
       a.occurrences, a.assigned_to, a.snoozed_until, a.effective_at,
       (pa.org_id IS NOT NULL) AS visible
FROM alert_event e
JOIN clinical_alerts a USING (alert_id)
LEFT JOIN patient_access pa ON pa.patient_id = e.patient_id AND pa.org_id = %(org)s
WHERE e.event_id > %(after)s OR e.event_id = ANY(%(missing)s)
ORDER BY e.event_id
LIMIT %(page)s
"""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    event_id: int
    patient_id: str
    data: dict[str, Any]


@dataclass(slots=True)
class Cursor:
    """One stream's position: everything up to ``after`` was read, except ``missing`` ids."""

    after: int
    missing: dict[int, float] = field(default_factory=dict)  # id -> give-up time (monotonic)

    def advance(self, ids: list[int], *, now: float) -> None:
        for i in ids:
            self.missing.pop(i, None)
        top = max(ids, default=self.after)
        seen = set(ids)
        for i in range(self.after + 1, top):
            if i not in seen:
                self.missing.setdefault(i, now + GAP_WAIT)
        self.after = max(self.after, top)
        for i, deadline in list(self.missing.items()):
            if deadline <= now:
                del self.missing[i]


async def latest_event_id(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (
        await conn.execute("SELECT coalesce(max(event_id), 0) FROM alert_event")
    ).fetchone()
    return int(row[0]) if row else 0


async def read(
    conn: psycopg.AsyncConnection[Any], org: str, cursor: Cursor, *, page: int = PAGE
) -> tuple[list[FeedEvent], bool]:
    """The organisation's events after ``cursor`` (advancing it). Returns (events, more)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _READ_SQL,
            {"org": org, "after": cursor.after, "missing": sorted(cursor.missing), "page": page},
        )
        rows = await cur.fetchall()
    cursor.advance([int(r["event_id"]) for r in rows], now=time.monotonic())
    out = []
    for r in rows:
        if not r.pop("visible"):
            continue
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        out.append(FeedEvent(int(r["event_id"]), str(r["patient_id"]), data))
    return out, len(rows) >= page


class EventFeed:
    """One LISTEN per process; :meth:`waiter` gives each stream an event that is set on every
    notification (the stream then reads from its cursor)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()
        self.listening = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        """End the streams (they see ``closed`` when woken)."""
        self.closed = True
        self._wake()

    def waiter(self) -> asyncio.Event:
        e = asyncio.Event()
        self._waiters.add(e)
        return e

    def release(self, e: asyncio.Event) -> None:
        self._waiters.discard(e)

    def _wake(self, _payload: str = "") -> None:
        for e in self._waiters:
            e.set()

    async def run(self, dsn: str) -> None:
        async def connected() -> None:
            self.listening.set()
            self._wake()  # catch up on whatever committed while we were not listening

        await listen_forever(dsn, CHANNEL, self._wake, on_connected=connected)
