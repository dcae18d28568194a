"""The alert store around the pure evaluator: loads a batch's rule versions and reading window,
evaluates, and applies the findings to ``clinical_alerts`` / ``alert_occurrences`` /
``alert_event`` inside the caller's (ingest) transaction; and the clinician's lifecycle actions.

Lifecycle (one live alert per patient and rule, ``clinical_alerts_one_live``):

* a finding with no live alert -> a new alert (``pending`` if it awaits confirmation, else
  ``open``) + ``created``;
* a finding for a live alert -> an occurrence (``UNIQUE (alert_id, reading_key)``: a reading is
  counted once, also when delivered twice in one batch) + ``occurrence``; a confirmed finding on
  a ``pending`` alert -> ``open`` + ``confirmed``; a higher level (not from a late reading) ->
  ``severity_changed``, and an acknowledged alert is re-opened (``reopened``);
* a valid normal reading beyond the hysteresis margin resolves a live alert of a non-latching rule
  (``resolved`` by ``system``); no data never clears anything;
* acknowledge (a red alert needs a note), assign, snooze (with a reason), resolve.

Every transition is an ``alert_event`` row (append-only: a trigger refuses UPDATE/DELETE) and a
``NOTIFY telehub_alert_events, '<event_id>'`` delivered at commit. ``payload.notify`` says whether
the event should page anyone: never for late findings, suppression windows, pending alerts or
info items.
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import psycopg

from gateway.alerting import codec, fastpath, gating
from gateway.alerting.evaluator import Clear, Evaluator
from gateway.alerting.model import (
    AlertEventType,
    AlertLevel,
    AlertState,
    DailyValue,
    DeltaParams,
    Finding,
    Gate,
    Observation,
    RuleVersion,
    ThresholdParams,
)
from gateway.alerting.templates import Programme, activate, override

CHANNEL: Final = "telehub_alert_events"


class AlertingError(Exception):
    """Base of the alerting package's errors."""


class AlertNotFound(AlertingError):
    pass


class TransitionRefused(AlertingError):
    """The action is not allowed in the alert's state (or lacks a required note/reason)."""

    def __init__(self, code: RefusalCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class RefusalCode(enum.Enum):
    NOTE_REQUIRED = "note-required"
    REASON_REQUIRED = "reason-required"
    RESOLVED = "alert-resolved"
    BAD_SNOOZE = "bad-snooze"


@dataclass(frozen=True, slots=True)
class Applied:
    alert_id: int
    rule_code: str
    event_ids: tuple[int, ...]


_VERSIONS = """
SELECT v.patient_id, p.timezone, v.rule_code, v.version, v.definition, v.effective_from,
       v.enabled, v.author, v.reason
FROM alert_rule_versions v JOIN patients p USING (patient_id)
WHERE v.patient_id = ANY(%s)
ORDER BY v.patient_id, v.rule_code, v.version
"""

_WINDOW = """
SELECT key, patient_id, mdc, value, unit, time, received_at, flags, special, kind
FROM readings WHERE patient_id = ANY(%s) AND mdc = ANY(%s) AND time >= %s
  AND superseded_at IS NULL
"""

_SUPPRESSED = """
SELECT patient_id, starts_at, ends_at FROM patient_suppressions WHERE patient_id = ANY(%s)
"""


def _observation(r: Any) -> Observation:
    return Observation(
        r.key, r.patient_id, r.mdc, r.value, r.unit, r.time, r.received_at, tuple(r.flags),
        r.special, r.kind,
    )  # fmt: skip


_SUMMARY = """
SELECT v.patient_id, p.timezone, count(*)::int, max(v.created_at)
FROM alert_rule_versions v
JOIN patients p USING (patient_id) WHERE v.patient_id = ANY(%s) GROUP BY 1, 2
"""

#: (database, patient) -> ((timezone, number of versions, latest created_at), versions).
#: Versions are immutable (a trigger refuses UPDATE) and only ever added, so a signature that
#: matches the database means the cached versions are exactly the stored ones; a new version
#: or zone changes it and the patient's versions are read again. Bounded: cleared when full.
_CACHE: dict[
    tuple[str, str], tuple[tuple[str, int, datetime], tuple[ZoneInfo, list[RuleVersion]]]
] = {}
_CACHE_MAX: Final = 100_000


#: Switch for the quiet-reading filter (tests compare both ways; benchmarks measure both).
FAST_PATH = True
#: patient -> (the cached versions list it was compiled from, compiled); see _compiled.
_COMPILED: dict[str, tuple[list[RuleVersion], fastpath.Compiled]] = {}


def _compiled(pid: str, versions: list[RuleVersion]) -> fastpath.Compiled:
    c = _COMPILED.get(pid)
    if c is None or c[0] is not versions:
        if len(_COMPILED) >= _CACHE_MAX:
            _COMPILED.clear()
        c = (versions, fastpath.compile_rules(versions))
        _COMPILED[pid] = c
    return c[1]


async def cached_versions(
    conn: psycopg.AsyncConnection[Any], patients: Sequence[str]
) -> dict[str, tuple[ZoneInfo, list[RuleVersion]]]:
    """:func:`load_versions` through the process cache (one cheap query when nothing changed)."""
    db = conn.info.dbname
    cur = await conn.execute(_SUMMARY, (list(patients),))
    summary = {pid: (tz, n, last) for pid, tz, n, last in await cur.fetchall()}
    out: dict[str, tuple[ZoneInfo, list[RuleVersion]]] = {}
    stale: list[str] = []
    for p, sig in summary.items():
        c = _CACHE.get((db, p))
        if c is not None and c[0] == sig:
            out[p] = c[1]
        else:
            stale.append(p)
    if stale:
        if len(_CACHE) + len(stale) > _CACHE_MAX:
            _CACHE.clear()
        fresh = await load_versions(conn, stale)
        for p in stale:
            if p not in fresh:
                continue
            out[p] = fresh[p]
            if len(fresh[p][1]) == summary[p][1]:  # else a version was added in between
                _CACHE[(db, p)] = (summary[p], fresh[p])
    return out


async def load_versions(
    conn: psycopg.AsyncConnection[Any], patients: Sequence[str]
) -> dict[str, tuple[ZoneInfo, list[RuleVersion]]]:
    cur = await conn.execute(_VERSIONS, (list(patients),))
    out: dict[str, tuple[ZoneInfo, list[RuleVersion]]] = {}
    for pid, tz, code, version, definition, eff, enabled, author, reason in await cur.fetchall():
        entry = out.setdefault(pid, (ZoneInfo(tz), []))
        entry[1].append(
            codec.decode(code, version, definition, effective_from=eff, enabled=enabled,
                         author=author, reason=reason)
        )  # fmt: skip
    return out


#: Flags that keep a reading from being a day's valid value (anything but ``Gate.VALID``).
_NOT_VALID_FLAGS: Final = sorted(
    gating.NEVER_FLAGS | gating.REPEAT_FLAGS | gating.EXCLUDE_FLAGS | gating.NO_WINDOW_FLAGS
    | {gating.RESULT_TOO_HIGH, gating.RESULT_TOO_LOW}
)  # fmt: skip

#: Which candidate readings are the first valid reading of their patient-local day (the batch
#: is already inserted, so earlier readings of the same batch count too).
_DAY_FIRST = """
SELECT n.key FROM unnest(%s::text[], %s::int[], %s::text[], %s::timestamptz[], %s::timestamptz[],
                         %s::text[]) AS n(patient_id, mdc, unit, day_start, t, key)
WHERE NOT EXISTS (
    SELECT 1 FROM readings r
    WHERE r.patient_id = n.patient_id AND r.mdc = n.mdc AND r.unit = n.unit
      AND r.time >= n.day_start AND r.time <= n.t AND (r.time, r.key) < (n.t, n.key)
      AND r.kind IN ('spot', 'continuous') AND r.value IS NOT NULL AND r.special IS NULL
      AND NOT r.flags && %s::text[] AND r.superseded_at IS NULL)
"""


def _first_only(versions: Sequence[RuleVersion]) -> bool:
    return all(
        v.params.daily_value is DailyValue.FIRST
        for v in versions
        if isinstance(v.params, DeltaParams)
    )


def _lookback(versions: Sequence[RuleVersion], *, delta: bool = True) -> timedelta | None:
    """How far before the earliest new reading the window must reach (None: no window needed)."""
    back: timedelta | None = None
    for v in versions:
        need: timedelta | None = None
        if isinstance(v.params, DeltaParams) and delta:
            need = timedelta(days=v.params.days + 2)  # local days, DST and midnight slack
        elif isinstance(v.params, ThresholdParams) and v.params.confirm is not None:
            need = v.params.confirm.max_gap
        if need is not None and (back is None or need > back):
            back = need
    return back


async def evaluate_batch(
    conn: psycopg.AsyncConnection[Any], inserted: Sequence[Any], at: datetime
) -> list[Applied]:
    """Evaluate newly stored readings (``NormalizedReading``-like) and apply the findings."""
    patients = sorted({r.patient_id for r in inserted})
    if not patients:
        return []
    rules = await cached_versions(conn, patients)
    if not rules:
        return []
    # the quiet-reading filter: only readings that may change something become Observations;
    # of a delta metric's clean readings only the earliest per local day can be a day's first
    fast_clears: list[Clear] = []
    by_patient: dict[str, list[Observation]] = defaultdict(list)
    earliest: dict[tuple[str, int, str, date], Any] = {}
    if FAST_PATH:
        part = fastpath.partition(
            {pid: (tz, _compiled(pid, vs)) for pid, (tz, vs) in rules.items()}, inserted
        )
        fast_clears = part.clears
        for r in part.evaluate:
            by_patient[r.patient_id].append(_observation(r))
        days = fastpath.LocalDays()
        for r in part.delta:
            g = (r.patient_id, r.mdc, r.unit, days.local_date(r.time, rules[r.patient_id][0]))
            e = earliest.get(g)
            if e is None or (r.time, r.key) < (e.time, e.key):
                earliest[g] = r
    else:
        for r in inserted:
            if r.patient_id in rules:
                by_patient[r.patient_id].append(_observation(r))
    candidates: dict[str, list[Observation]] = defaultdict(list)
    for r in earliest.values():
        candidates[r.patient_id].append(_observation(r))
    for pid, obs in by_patient.items():
        candidates[pid].extend(obs)
    fast_pairs = {(c.patient_id, c.rule_id) for c in fast_clears}
    delta_keys, live = await _day_firsts(conn, rules, candidates, fast_pairs)
    if FAST_PATH:
        # a day's first clean reading goes to the evaluator (its delta rule needs history)
        for pid, obs in candidates.items():
            keys = delta_keys.get(pid, set())
            seen = {o.key for o in by_patient.get(pid, ())}
            extra = [o for o in obs if o.key in keys and o.key not in seen]
            if extra:
                by_patient[pid].extend(extra)
    # one window query for the whole batch, only if some rule needs history: a delta rule only
    # when a new reading is the first valid one of its local day
    need = {p: _lookback(rules[p][1], delta=p in delta_keys) for p in by_patient}
    windowed = [p for p, b in need.items() if b is not None]
    history: dict[str, list[Observation]] = defaultdict(list)
    if windowed:
        back = max(b for b in need.values() if b is not None)
        lo = min(o.effective_at for p in windowed for o in by_patient[p]) - back
        metrics = sorted({m for p in windowed for v in rules[p][1] for m in v.metrics})
        cur = await conn.execute(_WINDOW, (windowed, metrics, lo))
        for row in await cur.fetchall():
            o = Observation(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                            tuple(row[7]), row[8], row[9])  # fmt: skip
            history[o.patient_id].append(o)
    results = []
    for pid in sorted(by_patient):  # patient, then rule order: one lock order for all ingesters
        tz, versions = rules[pid]
        new = by_patient[pid]
        results.append(
            Evaluator(pid, versions, tz).evaluate(
                [*new, *history[pid]],
                [o.key for o in new],
                None if not _first_only(versions) else delta_keys.get(pid, set()),
            )
        )
    findings = [f for r in results for f in r.findings]
    # clears: the latest per (patient, rule), and only for rules with a live alert (one query)
    latest: dict[tuple[str, str], Clear] = {}
    for c in [*fast_clears, *(c for r in results for c in r.clears)]:
        k = (c.patient_id, c.rule_id)
        if k not in latest or c.effective_at > latest[k].effective_at:
            latest[k] = c
    applied: list[Applied] = []
    if findings:
        cur = await conn.execute(_SUPPRESSED, (sorted({f.patient_id for f in findings}),))
        suppressions: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for pid, s, e in await cur.fetchall():
            suppressions[pid].append((s, e))
        for f in findings:
            suppressed = any(s <= f.effective_at < e for s, e in suppressions[f.patient_id])
            applied.append(await apply_finding(conn, f, at, suppressed=suppressed))
    if latest:
        # which (patient, rule) with a clear have a live alert: the fast path's pairs were asked
        # with the day-first query; ask only about the evaluator's others. Applying findings may
        # have opened an alert since then, so those patients are asked again too.
        found = {f.patient_id for f in findings}
        ask = {k for k in latest if k not in fast_pairs or k[0] in found}
        known = {k for k in live if k not in ask}
        if ask:
            cur = await conn.execute(_LIVE, _live_params(ask))
            known |= {(p, c) for p, c in await cur.fetchall()}
        for pid, code in sorted(known):
            clear = latest.get((pid, code))
            if clear is not None and (a := await apply_clear(conn, clear, at)) is not None:
                applied.append(a)
    return applied


async def _day_firsts(
    conn: psycopg.AsyncConnection[Any],
    rules: dict[str, tuple[ZoneInfo, list[RuleVersion]]],
    by_patient: dict[str, list[Observation]],
    live_pairs: set[tuple[str, str]] | None = None,
) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """Per patient, the new readings that are the first valid reading of their local day for
    a delta rule's metric (all its new delta-metric readings if a rule's daily value is not
    ``first``). One query for the batch; with ``live_pairs`` (patient, rule), also which of them
    have a live alert — both in one round trip (a pipeline)."""
    cols: tuple[list[str], list[int], list[str], list[datetime], list[datetime], list[str]] = (
        [], [], [], [], [], [],
    )  # fmt: skip
    out: dict[str, set[str]] = {}
    for pid, new in by_patient.items():
        tz, versions = rules[pid]
        deltas = [v for v in versions if isinstance(v.params, DeltaParams)]
        if not deltas:
            continue
        metrics = {m for v in deltas for m in v.metrics}
        candidates = [o for o in new if o.mdc in metrics and gating.gate(o) is Gate.VALID]
        if not _first_only(versions):
            if candidates:
                out[pid] = {o.key for o in candidates}
            continue
        # only the earliest candidate of each (metric, unit, local day) can be the day's first
        earliest: dict[tuple[int, str, date], Observation] = {}
        for o in candidates:
            g = (o.mdc, o.unit, o.effective_at.astimezone(tz).date())
            e = earliest.get(g)
            if e is None or (o.effective_at, o.key) < (e.effective_at, e.key):
                earliest[g] = o
        for (mdc, unit, day), o in earliest.items():
            start = datetime.combine(day, datetime.min.time(), tz)
            row = (pid, mdc, unit, start, o.effective_at, o.key)
            for col, v in zip(cols, row, strict=True):
                col.append(v)  # type: ignore[attr-defined]
    live: set[tuple[str, str]] = set()
    if not cols[0] and not live_pairs:
        return out, live
    async with conn.pipeline():
        day_cur = await conn.execute(_DAY_FIRST, (*cols, _NOT_VALID_FLAGS)) if cols[0] else None
        live_cur = await conn.execute(_LIVE, _live_params(live_pairs)) if live_pairs else None
        if day_cur is not None:
            firsts = {r[0] for r in await day_cur.fetchall()}
            for pid, new in by_patient.items():
                keys = {o.key for o in new if o.key in firsts}
                if keys:
                    out[pid] = keys
        if live_cur is not None:
            live = {(p, c) for p, c in await live_cur.fetchall()}
    return out, live


_LIVE: Final = (
    "SELECT patient_id, rule_code FROM clinical_alerts "
    "WHERE state <> 'resolved' AND patient_id = ANY(%s) AND rule_code = ANY(%s)"
)


def _live_params(pairs: set[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return sorted({p for p, _ in pairs}), sorted({c for _, c in pairs})


async def _event(
    conn: psycopg.AsyncConnection[Any], alert_id: int, patient: str, kind: AlertEventType,
    at: datetime, *, level: AlertLevel | None = None, actor: str = "system",
    note: str | None = None, payload: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    cur = await conn.execute(
        "INSERT INTO alert_event (alert_id, patient_id, type, level, actor, note, payload, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING event_id",
        (alert_id, patient, kind.value, None if level is None else level.value, actor, note,
         json.dumps(payload or {}), at),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    event_id = int(row[0])
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(event_id)))
    return event_id


async def record_event(
    conn: psycopg.AsyncConnection[Any], alert_id: int, patient: str, kind: AlertEventType,
    at: datetime, *, level: AlertLevel | None = None, actor: str = "system",
    note: str | None = None, payload: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Append one ``alert_event`` (announced at commit); for the sweeps beside the engine."""
    return await _event(conn, alert_id, patient, kind, at, level=level, actor=actor, note=note,
                        payload=payload)  # fmt: skip


def _pages(f: Finding, suppressed: bool) -> bool:
    return (
        not f.late
        and not suppressed
        and f.state is AlertState.OPEN
        and f.level in (AlertLevel.RED, AlertLevel.YELLOW)
    )


async def apply_finding(
    conn: psycopg.AsyncConnection[Any], f: Finding, at: datetime, *, suppressed: bool = False
) -> Applied:
    cur = await conn.execute(
        "SELECT alert_id, level, state FROM clinical_alerts "
        "WHERE patient_id = %s AND rule_code = %s AND state <> 'resolved' FOR UPDATE",
        (f.patient_id, f.rule_id),
    )
    row = await cur.fetchone()
    events: list[int] = []
    info = {"reading_key": f.reading_key, "effective_at": f.effective_at.isoformat(),
            "late": f.late, "rule_version": f.version, "suppressed": suppressed}  # fmt: skip
    if row is None:
        cur = await conn.execute(
            "INSERT INTO clinical_alerts (patient_id, rule_code, rule_version, params, level, "
            "state, late, reading_key, effective_at, value, unit, message, last_effective_at, "
            "created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (patient_id, rule_code) WHERE state <> 'resolved' DO NOTHING "
            "RETURNING alert_id",
            (f.patient_id, f.rule_id, f.version, json.dumps(f.params), f.level.value,
             f.state.value, f.late, f.reading_key, f.effective_at, f.value, f.unit, f.message,
             f.effective_at, at, at),
        )  # fmt: skip
        new = await cur.fetchone()
        if new is None:  # another ingester created it first: retry as an occurrence
            return await apply_finding(conn, f, at, suppressed=suppressed)
        alert_id = int(new[0])
        await _occurrence(conn, alert_id, f)
        events.append(await _event(
            conn, alert_id, f.patient_id, AlertEventType.CREATED, at, level=f.level,
            payload=info | {"state": f.state.value, "notify": _pages(f, suppressed)},
        ))  # fmt: skip
        return Applied(alert_id, f.rule_id, tuple(events))
    alert_id, level, state = int(row[0]), AlertLevel(row[1]), AlertState(row[2])
    if not await _occurrence(conn, alert_id, f):
        return Applied(alert_id, f.rule_id, ())  # this reading already counted
    await conn.execute(
        "UPDATE clinical_alerts SET occurrences = occurrences + 1, updated_at = %s, "
        "last_effective_at = GREATEST(last_effective_at, %s) WHERE alert_id = %s",
        (at, f.effective_at, alert_id),
    )
    events.append(await _event(conn, alert_id, f.patient_id, AlertEventType.OCCURRENCE, at,
                               level=f.level, payload=info))  # fmt: skip
    if state is AlertState.PENDING and f.state is AlertState.OPEN:
        await conn.execute("UPDATE clinical_alerts SET state = 'open' WHERE alert_id = %s",
                           (alert_id,))  # fmt: skip
        state = AlertState.OPEN
        events.append(await _event(
            conn, alert_id, f.patient_id, AlertEventType.CONFIRMED, at, level=level,
            payload=info | {"notify": _pages(f, suppressed)},
        ))  # fmt: skip
    if f.level.rank > level.rank and not f.late:
        await conn.execute(
            "UPDATE clinical_alerts SET level = %s, rule_version = %s, params = %s "
            "WHERE alert_id = %s",
            (f.level.value, f.version, json.dumps(f.params), alert_id),
        )
        events.append(await _event(
            conn, alert_id, f.patient_id, AlertEventType.SEVERITY_CHANGED, at, level=f.level,
            payload=info | {"from": level.value, "notify": _pages(f, suppressed)},
        ))  # fmt: skip
        if state is AlertState.ACKNOWLEDGED:
            await conn.execute(
                "UPDATE clinical_alerts SET state = 'open', snoozed_until = NULL "
                "WHERE alert_id = %s", (alert_id,),
            )  # fmt: skip
            events.append(await _event(conn, alert_id, f.patient_id, AlertEventType.REOPENED,
                                       at, level=f.level, payload=info))  # fmt: skip
    return Applied(alert_id, f.rule_id, tuple(events))


async def _occurrence(conn: psycopg.AsyncConnection[Any], alert_id: int, f: Finding) -> bool:
    cur = await conn.execute(
        "INSERT INTO alert_occurrences (alert_id, patient_id, reading_key, effective_at, value, "
        "level, late, rule_version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (alert_id, reading_key) DO NOTHING",
        (alert_id, f.patient_id, f.reading_key, f.effective_at, f.value, f.level.value, f.late,
         f.version),
    )  # fmt: skip
    return cur.rowcount == 1


async def apply_clear(conn: psycopg.AsyncConnection[Any], c: Clear, at: datetime) -> Applied | None:
    cur = await conn.execute(
        "UPDATE clinical_alerts SET state = 'resolved', updated_at = %s "
        "WHERE patient_id = %s AND rule_code = %s AND state <> 'resolved' "
        "AND last_effective_at < %s RETURNING alert_id",
        (at, c.patient_id, c.rule_id, c.effective_at),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    alert_id = int(row[0])
    ev = await _event(conn, alert_id, c.patient_id, AlertEventType.RESOLVED, at,
                      note="valid normal reading beyond the hysteresis margin",
                      payload={"reading_key": c.reading_key, "auto": True})  # fmt: skip
    return Applied(alert_id, c.rule_id, (ev,))


# -- clinician actions ---------------------------------------------------------------------------


async def _live(
    conn: psycopg.AsyncConnection[Any], alert_id: int
) -> tuple[str, AlertLevel, AlertState]:
    cur = await conn.execute(
        "SELECT patient_id, level, state FROM clinical_alerts WHERE alert_id = %s FOR UPDATE",
        (alert_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    state = AlertState(row[2])
    if state is AlertState.RESOLVED:
        raise TransitionRefused(RefusalCode.RESOLVED, f"alert {alert_id} is resolved")
    return str(row[0]), AlertLevel(row[1]), state


async def acknowledge(
    conn: psycopg.AsyncConnection[Any], alert_id: int, actor: str, note: str | None, at: datetime
) -> int:
    patient, level, _ = await _live(conn, alert_id)
    if level is AlertLevel.RED and not (note and note.strip()):
        raise TransitionRefused(RefusalCode.NOTE_REQUIRED, "acknowledging a red alert needs a note")
    await conn.execute(
        "UPDATE clinical_alerts SET state = 'acknowledged', updated_at = %s WHERE alert_id = %s",
        (at, alert_id),
    )
    return await _event(conn, alert_id, patient, AlertEventType.ACKNOWLEDGED, at, level=level,
                        actor=actor, note=note)  # fmt: skip


async def assign(
    conn: psycopg.AsyncConnection[Any], alert_id: int, actor: str, assignee: str | None,
    at: datetime,
) -> int:  # fmt: skip
    """Assign to a clinician; ``None`` returns it to the care team."""
    patient, level, _ = await _live(conn, alert_id)
    await conn.execute(
        "UPDATE clinical_alerts SET assigned_to = %s, updated_at = %s WHERE alert_id = %s",
        (assignee, at, alert_id),
    )
    return await _event(conn, alert_id, patient, AlertEventType.ASSIGNED, at, level=level,
                        actor=actor, payload={"assignee": assignee})  # fmt: skip


async def snooze(
    conn: psycopg.AsyncConnection[Any], alert_id: int, *, actor: str, until: datetime,
    reason: str, at: datetime,
) -> int:  # fmt: skip
    if not reason.strip():
        raise TransitionRefused(RefusalCode.REASON_REQUIRED, "a snooze needs a reason")
    if until <= at:
        raise TransitionRefused(RefusalCode.BAD_SNOOZE, "a snooze must end in the future")
    patient, level, _ = await _live(conn, alert_id)
    await conn.execute(
        "UPDATE clinical_alerts SET snoozed_until = %s, updated_at = %s WHERE alert_id = %s",
        (until, at, alert_id),
    )
    return await _event(conn, alert_id, patient, AlertEventType.SNOOZED, at, level=level,
                        actor=actor, note=reason, payload={"until": until.isoformat()})  # fmt: skip


async def resolve(
    conn: psycopg.AsyncConnection[Any], alert_id: int, actor: str, note: str | None, at: datetime
) -> int:
    patient, level, _ = await _live(conn, alert_id)
    await conn.execute(
        "UPDATE clinical_alerts SET state = 'resolved', updated_at = %s WHERE alert_id = %s",
        (at, alert_id),
    )
    return await _event(conn, alert_id, patient, AlertEventType.RESOLVED, at, level=level,
                        actor=actor, note=note)  # fmt: skip


async def enter_in_error(
    conn: psycopg.AsyncConnection[Any], superseded_keys: Sequence[str], actor: str, note: str,
    at: datetime, *, run: int,
) -> list[int]:  # fmt: skip
    """Alerts every occurrence of which is a superseded reading (``superseded_keys`` or superseded
    before) are *entered in error*: no longer live, flagged, and an ``invalidated`` event that
    is delivered wherever the alert was (``notify`` when an earlier event of it notified).
    Returns their ids. Live or not, an alert the correction takes away is marked; one that also
    counted a current reading is left as it is."""
    cur = await conn.execute(
        """SELECT a.alert_id, a.patient_id, a.level FROM clinical_alerts a
           WHERE NOT a.entered_in_error
             AND EXISTS (SELECT 1 FROM alert_occurrences o
                         WHERE o.alert_id = a.alert_id AND o.reading_key = ANY(%s))
             AND NOT EXISTS (
                 SELECT 1 FROM alert_occurrences o
                 WHERE o.alert_id = a.alert_id AND o.reading_key <> ALL(%s)
                   AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.key = o.reading_key
                                   AND r.superseded_at IS NOT NULL))
           ORDER BY a.patient_id, a.alert_id FOR UPDATE""",
        (list(superseded_keys), list(superseded_keys)),
    )
    out: list[int] = []
    for alert_id, patient, level in await cur.fetchall():
        notified = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM alert_event WHERE alert_id = %s "
            "AND coalesce((payload ->> 'notify')::boolean, false))",
            (alert_id,),
        )
        row = await notified.fetchone()
        await conn.execute(
            "UPDATE clinical_alerts SET entered_in_error = true, state = 'resolved', "
            "updated_at = %s WHERE alert_id = %s",
            (at, alert_id),
        )
        await _event(conn, alert_id, patient, AlertEventType.INVALIDATED, at,
                     level=AlertLevel(level), actor=actor, note=note,
                     payload={"reason": "entered-in-error", "reprocess_run": run,
                              "notify": bool(row and row[0])})  # fmt: skip
        out.append(int(alert_id))
    return out


# -- rule versions -------------------------------------------------------------------------------


async def _insert_version(
    conn: psycopg.AsyncConnection[Any], patient: str, v: RuleVersion, programme: str | None
) -> None:
    await conn.execute(
        "INSERT INTO alert_rule_versions (patient_id, rule_code, version, programme, "
        "effective_from, definition, enabled, author, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (patient, v.rule_id, v.version, programme, v.effective_from, json.dumps(codec.encode(v)),
         v.enabled, v.author, v.reason),
    )  # fmt: skip


async def activate_programme(
    conn: psycopg.AsyncConnection[Any], patient: str, programme: Programme,
    effective_from: datetime, author: str,
) -> list[RuleVersion]:  # fmt: skip
    """Version 1 of each of the programme's rules for ``patient`` (rules it already has are
    left alone: re-applying a fleet file changes nothing)."""
    existing = {
        v.rule_id for v in (await load_versions(conn, [patient])).get(patient, (None, []))[1]
    }
    made = [v for v in activate(programme, effective_from, author) if v.rule_id not in existing]
    for v in made:
        await _insert_version(conn, patient, v, programme.value)
    return made


async def override_rule(
    conn: psycopg.AsyncConnection[Any], patient: str, rule_code: str, *, author: str,
    reason: str, effective_from: datetime, params: ThresholdParams | DeltaParams | None = None,
    level: AlertLevel | None = None, enabled: bool | None = None,
) -> RuleVersion:  # fmt: skip
    versions = [v for v in (await load_versions(conn, [patient])).get(patient, (None, []))[1]
                if v.rule_id == rule_code]  # fmt: skip
    if not versions:
        raise AlertingError(f"patient {patient!r} has no rule {rule_code!r}")
    latest = max(versions, key=lambda v: v.version)
    new = override(latest, author=author, reason=reason, effective_from=effective_from,
                   params=params, level=level, enabled=enabled)  # fmt: skip
    await _insert_version(conn, patient, new, None)
    return new
