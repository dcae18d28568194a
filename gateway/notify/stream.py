"""In-process fan-out of alerts to live-stream (SSE) subscribers.

One :class:`AlertBroadcaster` per API process LISTENs on ``telehub_alerts`` over a dedicated
connection, fetches each notified alert once (with the organisations that follow its patient) and
offers it to the subscriptions of those organisations only. Notifications that arrive together are
coalesced (one fetch per batch of ids), so a 1 Hz stream of occurrence updates costs one query per
batch, not one per subscriber.

Every subscription has a bounded queue: a client that does not keep up is closed ("slow_consumer")
rather than buffered without bound. After a lost LISTEN connection the broadcaster catches up from
the alerts table (alerts changed since the last one it saw, minus a margin); duplicates are dropped
by event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

import psycopg

from gateway.notify.alerts import (
    ALERTS_CHANNEL,
    AlertEvent,
    AlertView,
    fetch_alert_events,
    parse_alert_id,
)
from gateway.notify.listen import listen_forever
from gateway.notify.pool import Pool
from gateway.notify.tasks import cancel_and_wait

log = logging.getLogger(__name__)

AlertCallback = Callable[[AlertView], None]

#: Alerts whose last change is this much older than the newest one seen are still re-read after a
#: reconnect (a transaction's now() is its start, it may commit later).
CATCH_UP_MARGIN = timedelta(seconds=60)
#: Most alerts re-read in one catch-up.
CATCH_UP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """Last item of a subscription's queue: why the stream ends ("slow_consumer", "shutdown")."""

    reason: str


@dataclass(eq=False)
class Subscription:
    """One live-stream client of one organisation."""

    org_id: str
    limit: int
    queue: asyncio.Queue[AlertEvent | StreamClosed] = field(init=False)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None

    def __post_init__(self) -> None:
        # one slot more than the limit so the StreamClosed marker always fits
        self.queue = asyncio.Queue(maxsize=self.limit + 1)

    def offer(self, event: AlertEvent) -> bool:
        """Queue an event; closes the subscription instead if its queue is full."""
        if self.closed.is_set():
            return False
        if self.queue.qsize() >= self.limit:
            self.close("slow_consumer")
            return False
        self.queue.put_nowait(event)
        return True

    def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.reason = reason
        self.closed.set()
        self.queue.put_nowait(StreamClosed(reason))

    async def next(self, timeout: float) -> AlertEvent | StreamClosed | None:
        """The next item, or None after ``timeout`` seconds without one (time for a heartbeat)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None


@dataclass(slots=True)
class BroadcasterStats:
    subscribers: int = 0
    published: int = 0
    slow_consumers_closed: int = 0
    fetch_errors: int = 0


class AlertBroadcaster:
    """Fans alert events out to the subscriptions of the organisations that may see them."""

    def __init__(
        self,
        *,
        queue_size: int = 100,
        on_alert: AlertCallback | None = None,
        batch_max: int = 500,
        dedup_size: int = 10_000,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self.on_alert = on_alert
        self.batch_max = batch_max
        self._subs: set[Subscription] = set()
        self._closed_reason: str | None = None
        self._last_event: OrderedDict[int, str] = OrderedDict()
        self._dedup_size = dedup_size
        self._pending: set[int] = set()
        self._wake = asyncio.Event()
        #: set once the first LISTEN is established (events are live from then on)
        self.listening = asyncio.Event()
        self._watermark: datetime | None = None
        self._published = 0
        self._slow_closed = 0
        self._fetch_errors = 0

    # -- subscriptions ---------------------------------------------------------------------------
    def subscribe(self, org_id: str) -> Subscription:
        sub = Subscription(org_id=org_id, limit=self.queue_size)
        if self._closed_reason is not None:
            sub.close(self._closed_reason)
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self, reason: str = "shutdown") -> None:
        """End every stream (and refuse new ones): called before the HTTP server shuts down,
        which otherwise waits for the long-lived responses to finish."""
        self._closed_reason = reason
        for sub in list(self._subs):
            sub.close(reason)
        self._subs.clear()

    def stats(self) -> BroadcasterStats:
        return BroadcasterStats(
            subscribers=len(self._subs),
            published=self._published,
            slow_consumers_closed=self._slow_closed,
            fetch_errors=self._fetch_errors,
        )

    # -- fan-out ---------------------------------------------------------------------------------
    def publish(self, event: AlertEvent) -> int:
        """Offer an event to its organisations' subscriptions; returns how many took it.

        An event identical to the last one published for the same alert is dropped.
        """
        alert_id = event.alert.alert_id
        if self._last_event.get(alert_id) == event.event_id:
            return 0
        self._last_event[alert_id] = event.event_id
        self._last_event.move_to_end(alert_id)
        while len(self._last_event) > self._dedup_size:
            self._last_event.popitem(last=False)
        self._published += 1
        taken = 0
        for sub in list(self._subs):
            if sub.org_id not in event.orgs:
                continue
            if sub.offer(event):
                taken += 1
            elif sub.reason == "slow_consumer":
                self._slow_closed += 1
                self._subs.discard(sub)
                log.warning("live stream of org %s closed: client too slow", sub.org_id)
        if self.on_alert is not None:
            self.on_alert(event.alert)
        return taken

    def hint(self, alert_id: int) -> None:
        """Fetch and publish this alert soon (what a notification does)."""
        self._pending.add(alert_id)
        self._wake.set()

    # -- database side ---------------------------------------------------------------------------
    async def run(
        self,
        dsn: str,
        pool: Pool,
        *,
        query_timeout: float = 10.0,
        check_interval: float = 30.0,
    ) -> NoReturn:
        """LISTEN and publish until cancelled."""

        def on_notify(payload: str) -> None:
            alert_id = parse_alert_id(payload)
            if alert_id is not None:
                self.hint(alert_id)

        async def on_connected() -> None:
            await self._catch_up(pool, query_timeout)
            self.listening.set()

        tasks = [
            asyncio.create_task(
                listen_forever(
                    dsn,
                    ALERTS_CHANNEL,
                    on_notify,
                    on_connected=on_connected,
                    check_interval=check_interval,
                ),
                name="alert-stream-listen",
            ),
            asyncio.create_task(self._fetch_loop(pool, query_timeout), name="alert-stream-fetch"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()  # raises: both run until cancelled
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            await cancel_and_wait(*tasks)

    async def _fetch_loop(self, pool: Pool, query_timeout: float) -> NoReturn:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ids = sorted(self._pending)[: self.batch_max]
            self._pending.difference_update(ids)
            if self._pending:
                self._wake.set()
            try:
                async with asyncio.timeout(query_timeout):
                    async with pool.connection() as conn:
                        events = await fetch_alert_events(conn, ids)
            except (psycopg.Error, TimeoutError) as exc:
                # keep the ids and try again shortly; counted in stats, visible in /health
                self._fetch_errors += 1
                log.warning(
                    "live stream: fetching %d alerts failed (%s)", len(ids), type(exc).__name__
                )
                self._pending.update(ids)
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            for event in events:
                self._advance(event.alert)
                self.publish(event)

    def _advance(self, alert: AlertView) -> None:
        # server times only: last_seen_at is a reading's (device) time and may lie ahead
        changed = max(t for t in (alert.raised_at, alert.acknowledged_at) if t is not None)
        if self._watermark is None or changed > self._watermark:
            self._watermark = changed

    async def _catch_up(self, pool: Pool, query_timeout: float) -> None:
        """After (re)connecting: re-read the alerts that changed since the last known point.

        Occurrence updates are found through ``last_seen_at`` (the breaching reading's time), so
        an update carried by a reading far in the past is found only through its next change.
        """
        async with asyncio.timeout(query_timeout):
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT now()")).fetchone()
                assert row is not None
                now: datetime = row[0]
                since = self._watermark
                ids: list[int] = []
                if since is not None:
                    cur = await conn.execute(
                        """SELECT alert_id FROM alerts
                           WHERE greatest(raised_at, last_seen_at, acknowledged_at) >= %s
                           ORDER BY alert_id DESC LIMIT %s""",
                        (since - CATCH_UP_MARGIN, CATCH_UP_LIMIT),
                    )
                    ids = [int(r[0]) for r in await cur.fetchall()]
        self._watermark = now if since is None else max(since, now)
        if ids:
            log.info("live stream: re-reading %d alerts after reconnecting", len(ids))
            for alert_id in ids:
                self.hint(alert_id)
