"""The escalation sweep: fires the steps of the alerts' escalation policies on the working
calendar (:mod:`gateway.alerting.escalation`, :mod:`gateway.alerting.calendar`).

Every ``interval`` the sweep looks at the live clinical alerts. An alert seen for the first time
gets a snapshot of the policy of its level (``alert_escalation_policy``; none configured: a
snapshot of "no policy", so a later policy does not apply to it). The clock starts at the alert's
creation or its latest re-open (a re-open restarts the policy); each due step fires once
(``alert_escalations``) as an ``escalated`` event (actor ``telehub``, payload: step, whom, when
it was due, the calendar; ``notify``: delivered through the alert's webhooks/e-mail like the
alert). Acknowledging stops ``not_acknowledged`` steps, resolving stops all; a snoozed alert
waits; late and pending alerts do not escalate. Several gateways may sweep (the primary key makes
a second firing a no-op, in the same transaction as its event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from gateway.alerting import store as clinical
from gateway.alerting.calendar import Calendar, CalendarKind
from gateway.alerting.escalation import Policy, due_steps
from gateway.alerting.model import AlertEventType, AlertLevel, AlertState
from gateway.db.context import enter_system

log = logging.getLogger(__name__)

ACTOR: Final = "telehub"


@dataclass(frozen=True, slots=True)
class Fired:
    alert_id: int
    step: int
    notify: str
    due_at: datetime
    event_id: int


_ALERTS_SQL: Final = """
SELECT a.alert_id, a.patient_id, a.level, a.state, a.late, a.snoozed_until, a.created_at,
       (SELECT max(e.at) FROM alert_event e WHERE e.alert_id = a.alert_id
          AND e.type = 'reopened') AS reopened_at,
       s.policy, s.alert_id IS NOT NULL AS snapshotted,
       (SELECT p.policy FROM escalation_policies p WHERE p.level = a.level) AS current
FROM clinical_alerts a LEFT JOIN alert_escalation_policy s USING (alert_id)
WHERE a.state IN ('open', 'acknowledged')
ORDER BY a.alert_id
FOR UPDATE OF a SKIP LOCKED"""


async def sweep(
    conn: psycopg.AsyncConnection[Any], now: datetime, calendars: dict[CalendarKind, Calendar]
) -> list[Fired]:
    """Fire the steps due at ``now`` (one transaction)."""
    fired: list[Fired] = []
    async with conn.transaction():
        cur = await conn.execute(_ALERTS_SQL)
        rows = await cur.fetchall()
        for (alert_id, patient, level, state, late, snoozed, created, reopened, snapshot,
             snapshotted, current) in rows:  # fmt: skip
            policy = snapshot
            if not snapshotted:
                policy = current
                await conn.execute(
                    "INSERT INTO alert_escalation_policy (alert_id, policy, snapshot_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (alert_id, None if policy is None else json.dumps(policy), now),
                )
            if policy is None:
                continue
            p = Policy.decode(policy)
            started = max(created, reopened) if reopened is not None else created
            cur = await conn.execute(
                "SELECT step FROM alert_escalations WHERE alert_id = %s AND started_at = %s",
                (alert_id, started),
            )
            done = {int(r[0]) for r in await cur.fetchall()}
            for i, due in due_steps(
                p, calendars[p.calendar], started_at=started, now=now, state=AlertState(state),
                late=late, snoozed_until=snoozed, fired=done,
            ):  # fmt: skip
                step = p.steps[i]
                event_id = await clinical.record_event(
                    conn, alert_id, patient, AlertEventType.ESCALATED, now,
                    level=AlertLevel(level), actor=ACTOR,
                    note=f"escalation step {i + 1}: {step.notify}",
                    payload={"step": i + 1, "notify_whom": step.notify, "when": step.when.value,
                             "due_at": due.isoformat(), "calendar": p.calendar.value,
                             "notify": True},
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO alert_escalations (alert_id, step, started_at, due_at, "
                    "fired_at, event_id) VALUES (%s, %s, %s, %s, %s, %s)",
                    (alert_id, i, started, due, now, event_id),
                )
                fired.append(Fired(int(alert_id), i, step.notify, due, event_id))
    return fired


class EscalationWatch:
    """Run :func:`sweep` every ``interval`` seconds until stopped (Danish calendars)."""

    def __init__(self, dsn: str, *, interval: float = 60.0, db_timeout: float = 30.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self.db_timeout = db_timeout
        self.sweeps = 0

    async def run(self, stop: asyncio.Event) -> None:
        calendars = {k: Calendar.danish(k) for k in CalendarKind}
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.db_timeout):
                    conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                    async with conn:
                        await enter_system(conn, "escalation")
                        fired = await sweep(conn, datetime.now(UTC), calendars)
                self.sweeps += 1
                for f in fired:
                    log.info("alert %d: escalation step %d", f.alert_id, f.step + 1)
            except (psycopg.Error, TimeoutError) as exc:  # retried at the next interval
                log.warning("escalation sweep failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
