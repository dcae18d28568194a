"""A3, the hub-silent technical alert (reference: clinical-alerting.md, A3).

A hub is *silent* when nothing was heard from it (heartbeat, readings) for longer than
``silent_after`` (default 2 x the hub's 60 s heartbeat + 30 s). :func:`sweep` raises one live
``hub-silent`` technical alert per silent hub (``technical_alerts``, migration 91; ``first_at`` is
when the hub was last heard, ``last_at`` the sweep that last saw it silent) and resolves it
(actor ``telehub``) when the hub is heard again: the condition is not latching. Loss of remote
communication is a technical alarm condition (IEC 60601-1-8), not a clinical one; the alert goes
to the operators of the hub's organisation (``GET /api/v1/technical-alerts``).

A hub never heard (``last_seen`` null: not installed yet) is not silent. :class:`HubSilenceWatch`
sweeps every ``interval`` seconds; several gateways may run it (the one-live-alert index makes a
concurrent raise a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from gateway.db.context import enter_system

log = logging.getLogger(__name__)

DEFAULT_SILENT_AFTER: Final = timedelta(seconds=2 * 60 + 30)


@dataclass(frozen=True, slots=True)
class SweepResult:
    raised: tuple[str, ...]  # hubs whose silent alert was raised now
    resolved: tuple[str, ...]  # hubs heard again: their alert resolved now


async def sweep(
    conn: psycopg.AsyncConnection[Any], now: datetime, silent_after: timedelta
) -> SweepResult:
    """Raise and resolve the hub-silent alerts as of ``now`` (one transaction)."""
    since = now - silent_after
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """UPDATE technical_alerts t SET state = 'resolved', resolved_at = %(now)s,
                      resolved_by = 'telehub',
                      note = coalesce(t.note || '; ', '') || 'hub heard again'
               FROM hubs h
               WHERE t.hub_id = h.hub_id AND t.kind = 'hub-silent' AND t.state <> 'resolved'
                 AND h.last_seen >= %(since)s
               RETURNING t.hub_id""",
            {"now": now, "since": since},
        )
        resolved = tuple(sorted(str(r[0]) for r in await cur.fetchall()))
        await cur.execute(
            """INSERT INTO technical_alerts (hub_id, kind, count, first_at, last_at, state)
               SELECT hub_id, 'hub-silent', 1, last_seen, %(now)s, 'open' FROM hubs
               WHERE last_seen IS NOT NULL AND last_seen < %(since)s
               ORDER BY hub_id
               ON CONFLICT (hub_id, kind) WHERE state <> 'resolved'
               DO UPDATE SET last_at = EXCLUDED.last_at
               RETURNING hub_id, xmax = 0""",
            {"now": now, "since": since},
        )
        raised = tuple(sorted(str(h) for h, new in await cur.fetchall() if new))
    return SweepResult(raised, resolved)


class HubSilenceWatch:
    """Run :func:`sweep` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        dsn: str,
        *,
        silent_after: timedelta = DEFAULT_SILENT_AFTER,
        interval: float = 30.0,
        db_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.silent_after = silent_after
        self.interval = interval
        self.db_timeout = db_timeout
        self.sweeps = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.db_timeout):
                    conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                    async with conn:
                        await enter_system(conn, "hub-silence")
                        result = await sweep(conn, datetime.now(UTC), self.silent_after)
                self.sweeps += 1
                for hub in result.raised:
                    log.warning("hub %s silent for more than %s", hub, self.silent_after)
                for hub in result.resolved:
                    log.info("hub %s heard again", hub)
            except (psycopg.Error, TimeoutError) as exc:  # retried at the next interval
                log.warning("hub silence sweep failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
