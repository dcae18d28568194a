"""A1, the missed-measurement sweep: the blue adherence alert (reference: clinical-alerting.md A1).

Every ``interval`` the sweep looks at the measurement-plan slots (``missing`` rule versions,
:class:`gateway.alerting.model.MissingParams`; the version in force when the slot opens) that
closed since ``lookback`` ago and are not decided yet, and decides each once
(``adherence_slots``, migration 96):

* **met** — a reading of the metric that counts (valid, or a meter's HI/LO; not superseded)
  falls between the slot's start and its deadline plus grace;
* **suppressed** — a patient suppression window (admission, holiday) overlaps the slot: no
  blue alert;
* **held** — a hub of the patient's devices is silent (not heard for ``silent_after``; A3 raises
  the technical alert): decided again at a later sweep, when its backlog has had a chance to
  arrive;
* **missed** — otherwise: a blue alert (one live alert per patient and rule; a further missed
  slot is an occurrence of it), routine, never paged.

A missed slot whose reading arrives later becomes **late**; when no missed slot of the alert is
left, the alert is resolved by ``system`` with the note "data arrived late". The sweep reads
and writes in one transaction; several gateways may run it (the slot's primary key makes a
second decision a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import psycopg

from gateway.alerting import adherence, codec
from gateway.alerting import store as clinical
from gateway.alerting.evaluator import version_at
from gateway.alerting.model import (
    AlertLevel,
    AlertState,
    Finding,
    MissingParams,
    Observation,
    RuleKind,
    RuleVersion,
)
from gateway.db.context import enter_system

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK: Final = timedelta(days=7)
DEFAULT_SILENT_AFTER: Final = timedelta(seconds=2 * 60 + 30)
LATE_NOTE: Final = "data arrived late"


@dataclass(frozen=True, slots=True)
class SweepResult:
    met: int = 0
    missed: tuple[tuple[str, str, str], ...] = ()  # (patient, rule, slot token) raised now
    held: int = 0
    suppressed: int = 0
    late: int = 0
    resolved: tuple[int, ...] = ()  # alerts resolved: every missed slot's data arrived


_VERSIONS_SQL: Final = """
SELECT v.patient_id, v.rule_code, v.version, v.effective_from, v.definition, v.enabled,
       v.author, v.reason, p.timezone
FROM alert_rule_versions v JOIN patients p USING (patient_id)
WHERE v.definition ->> 'kind' = 'missing'
ORDER BY v.patient_id, v.rule_code, v.version"""


async def _plans(
    conn: psycopg.AsyncConnection[Any],
) -> dict[tuple[str, str], tuple[ZoneInfo, list[RuleVersion]]]:
    out: dict[tuple[str, str], tuple[ZoneInfo, list[RuleVersion]]] = {}
    cur = await conn.execute(_VERSIONS_SQL)
    for pid, code, version, eff, definition, enabled, author, reason, tz in await cur.fetchall():
        v = codec.decode(code, version, definition, effective_from=eff, enabled=enabled,
                         author=author, reason=reason)  # fmt: skip
        out.setdefault((pid, code), (ZoneInfo(tz), []))[1].append(v)
    return out


def _due(
    versions: list[RuleVersion], tz: ZoneInfo, after: datetime, now: datetime
) -> list[tuple[RuleVersion, adherence.Window]]:
    """The windows closing in (after, now], each with the version in force when it opened."""
    out: list[tuple[RuleVersion, adherence.Window]] = []
    for v in versions:
        if v.kind is not RuleKind.MISSING or not isinstance(v.params, MissingParams):
            continue
        for w in adherence.windows(v.params, tz, after, now):
            if version_at(versions, v.rule_id, w.opens) is v:
                out.append((v, w))
    return sorted(out, key=lambda vw: vw[1])


async def _measured(
    conn: psycopg.AsyncConnection[Any], patient: str, mdc: int, lo: datetime, hi: datetime
) -> list[datetime]:
    cur = await conn.execute(
        "SELECT key, value, unit, time, received_at, flags, special, kind FROM readings "
        "WHERE patient_id = %s AND mdc = %s AND time >= %s AND time < %s "
        "AND superseded_at IS NULL",
        (patient, mdc, lo, hi),
    )
    out = []
    for key, value, unit, t, received, flags, special, kind in await cur.fetchall():
        obs = Observation(key, patient, mdc, value, unit, t, received, tuple(flags), special, kind)
        if adherence.counts(obs):
            out.append(t)
    return out


async def sweep(
    conn: psycopg.AsyncConnection[Any],
    now: datetime,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    silent_after: timedelta = DEFAULT_SILENT_AFTER,
) -> SweepResult:
    """Decide the slots closed in (now - lookback, now] and resolve the blue alerts whose
    missed slots' data arrived (one transaction)."""
    after = now - lookback
    met = held = suppressed = late = 0
    missed: list[tuple[str, str, str]] = []
    resolved: list[int] = []
    async with conn.transaction():
        plans = await _plans(conn)
        for (patient, code), (tz, versions) in sorted(plans.items(), key=lambda kv: kv[0]):
            due = _due(versions, tz, after, now)
            if not due:
                continue
            cur = await conn.execute(
                "SELECT day, slot, outcome, alert_id FROM adherence_slots "
                "WHERE patient_id = %s AND rule_code = %s AND closes > %s",
                (patient, code, after),
            )
            decided = {(d, s): (o, a) for d, s, o, a in await cur.fetchall()}
            mdc = due[0][0].mdc
            measured = await _measured(
                conn, patient, mdc, min(w.opens for _, w in due), max(w.closes for _, w in due)
            )
            cur = await conn.execute(
                "SELECT starts_at, ends_at FROM patient_suppressions WHERE patient_id = %s "
                "AND ends_at > %s",
                (patient, after),
            )
            windows_off = await cur.fetchall()
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM hubs h WHERE h.last_seen < %s AND h.hub_id IN "
                "(SELECT d.hub_id FROM devices d WHERE d.patient_id = %s))",
                (now - silent_after, patient),
            )
            row = await cur.fetchone()
            hub_silent = bool(row and row[0])
            late_alerts: set[int] = set()
            for v, w in due:
                outcome, alert_id = decided.get((w.day, w.slot), (None, None))
                if outcome in ("met", "late", "suppressed"):
                    continue
                if outcome == "missed":
                    if adherence.met(w, measured):
                        await _decide(conn, patient, v, w, "late", now=now, alert_id=alert_id)
                        late += 1
                        if alert_id is not None:
                            late_alerts.add(int(alert_id))
                    continue
                if adherence.met(w, measured):
                    await _decide(conn, patient, v, w, "met", now=now)
                    met += 1
                elif any(s < w.closes and e > w.opens for s, e in windows_off):
                    await _decide(conn, patient, v, w, "suppressed", now=now)
                    suppressed += 1
                elif hub_silent:
                    await _decide(conn, patient, v, w, "held", now=now)
                    held += 1
                else:
                    applied = await clinical.apply_finding(conn, _finding(patient, v, w, tz), now)
                    await _decide(conn, patient, v, w, "missed", now=now, alert_id=applied.alert_id)
                    missed.append((patient, code, w.token))
            for alert_id in sorted(late_alerts):
                if await _resolve_if_all_late(conn, alert_id, now):
                    resolved.append(alert_id)
    return SweepResult(met, tuple(missed), held, suppressed, late, tuple(resolved))


def _finding(patient: str, v: RuleVersion, w: adherence.Window, tz: ZoneInfo) -> Finding:
    opens = w.opens.astimezone(tz).strftime("%H:%M")
    deadline = w.deadline.astimezone(tz).strftime("%H:%M")
    assert isinstance(v.params, MissingParams)
    return Finding(
        patient, v.rule_id, v.version, AlertLevel.BLUE, AlertState.OPEN, w.token, w.deadline,
        None, "", False,
        f"{v.title}: no valid reading {opens}-{deadline} (local) on {w.day.isoformat()}",
        {"slot": str(w.slot), "day": w.day.isoformat(), "opens": w.opens.isoformat(),
         "deadline": w.deadline.isoformat(), "grace": str(v.params.grace)},
    )  # fmt: skip


async def _decide(
    conn: psycopg.AsyncConnection[Any],
    patient: str,
    v: RuleVersion,
    w: adherence.Window,
    outcome: str,
    *,
    now: datetime,
    alert_id: int | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO adherence_slots (patient_id, rule_code, rule_version, day, slot, opens,
               closes, outcome, decided_at, alert_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (patient_id, rule_code, day, slot) DO UPDATE SET
               outcome = EXCLUDED.outcome, decided_at = EXCLUDED.decided_at,
               alert_id = coalesce(EXCLUDED.alert_id, adherence_slots.alert_id)
           WHERE adherence_slots.outcome IN ('held', 'missed')""",
        (patient, v.rule_id, v.version, w.day, w.slot, w.opens, w.closes, outcome, now,
         alert_id),
    )  # fmt: skip


async def _resolve_if_all_late(
    conn: psycopg.AsyncConnection[Any], alert_id: int, now: datetime
) -> bool:
    cur = await conn.execute(
        "SELECT state, (SELECT count(*) FROM adherence_slots WHERE alert_id = %s "
        "AND outcome = 'missed') FROM clinical_alerts WHERE alert_id = %s FOR UPDATE",
        (alert_id, alert_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] == AlertState.RESOLVED.value or row[1]:
        return False
    await clinical.resolve(conn, alert_id, "system", LATE_NOTE, now)
    return True


class AdherenceWatch:
    """Run :func:`sweep` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        dsn: str,
        *,
        interval: float = 60.0,
        silent_after: timedelta = DEFAULT_SILENT_AFTER,
        db_timeout: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.interval = interval
        self.silent_after = silent_after
        self.db_timeout = db_timeout
        self.sweeps = 0
        self.last: SweepResult | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.db_timeout):
                    conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                    async with conn:
                        await enter_system(conn, "adherence")
                        self.last = await sweep(
                            conn, datetime.now(UTC), silent_after=self.silent_after
                        )
                self.sweeps += 1
                if self.last.missed:
                    log.info("adherence: %d missed slot(s)", len(self.last.missed))
            except (psycopg.Error, TimeoutError) as exc:  # retried at the next interval
                log.warning("adherence sweep failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


def by_patient(result: SweepResult) -> dict[str, list[str]]:
    """The slot tokens missed now, per patient (for logs and tests)."""
    out: dict[str, list[str]] = defaultdict(list)
    for patient, _, token in result.missed:
        out[patient].append(token)
    return dict(out)
