"""``telehub reprocess``: decode stored raw bytes again with the current drivers.

Every reading keeps the raw bytes of its device record (``readings.raw``) and the driver that
decoded it (``source``). After a driver is corrected, this command selects stored readings (by
source, device, hub, patient, time range), decodes each record's bytes again, maps the result
exactly as the edge does (:func:`edge.readings.to_readings`, with the record's stored context:
receive time, hub clock, whether the hub set the device clock, the patient's time zone) and
validates it as the ingester does (:func:`gateway.ingest.validate.check_reading`).

``--dry-run`` (the default) prints the difference and writes nothing. ``--apply`` (with a
``--reason``) records it in one transaction (migration 92, :mod:`gateway.db.versions`):

* each changed or removed reading is marked superseded (kept, for audit; its key still
  deduplicates a hub's re-send);
* each corrected or added reading is stored as a new row; its key is the edge's key of the
  corrected record or, where that equals the old key (a change outside the value and time
  tokens, e.g. a flag), a key derived from the old key and the corrected content;
* ``reading_versions`` links old and new, ``reprocess_runs`` says who ran it, why, and what it did;
* clinical alerts raised only by superseded readings are entered in error
  (:func:`gateway.alerting.store.enter_in_error`); legacy threshold alerts whose only reading is
  superseded are closed;
* the new readings are evaluated by the rules in force at their effective time, as if they had
  just arrived (legacy rules and the clinical engine);
* after the commit the aggregates are refreshed over the affected time range.

A record that no longer decodes, decodes to something the ingester would reject, or is no
longer a reading is listed under ``problems`` and left as it is; the others go on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import psycopg
from psycopg.rows import dict_row

from drivers import registry
from drivers.errors import DecodeError
from drivers.observation import Measurement
from edge.readings import RecordContext, is_forwarded, to_readings
from gateway.alerting import store as clinical
from gateway.db.readings import READINGS_INSERT_COLUMNS, NormalizedReading
from gateway.ingest.alerting import raise_alerts
from gateway.ingest.model import Reject
from gateway.ingest.validate import check_reading
from wire import contract

#: The fields a re-decode can change (everything else is the record's context, kept as stored).
COMPARED: Final = (
    "time",
    "kind",
    "mdc",
    "loinc",
    "unit",
    "mdc_unit",
    "value",
    "special",
    "orig_value",
    "orig_unit",
    "panel",
    "flags",
    "time_source",
    "device_time",
    "sequence",
    "user_id",
)
#: A corrected reading may lie this far ahead of the gateway clock (the ingester's own default).
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
#: Most records one run reads (``--limit`` to change).
DEFAULT_LIMIT: Final = 100_000


class ReprocessError(Exception):
    """The run cannot go on (nothing was written)."""


class Change(StrEnum):
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Selection:
    source: str | None = None
    device: str | None = None
    hub: str | None = None
    patient: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT

    def as_json(self) -> dict[str, Any]:
        return {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in (
                ("source", self.source),
                ("device", self.device),
                ("hub", self.hub),
                ("patient", self.patient),
                ("since", self.since),
                ("until", self.until),
                ("limit", self.limit),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class Diff:
    change: Change
    old: NormalizedReading | None
    new: NormalizedReading | None
    fields: tuple[str, ...]  # the COMPARED fields that differ (all of them for added/removed)

    @property
    def patient_id(self) -> str:
        r = self.old or self.new
        assert r is not None
        return r.patient_id


@dataclass(frozen=True, slots=True)
class Problem:
    hub_id: str
    device_id: str
    time: datetime
    keys: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    selection: Selection
    records: int = 0
    readings: int = 0
    unchanged: int = 0
    diffs: tuple[Diff, ...] = ()
    problems: tuple[Problem, ...] = ()
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    run_id: int
    superseded: int
    inserted: int
    linked_existing: int
    alerts_entered_in_error: tuple[int, ...]
    legacy_alerts_closed: int
    alerts_changed: int
    refreshed: tuple[datetime, datetime] | None = field(default=None)


_SELECT_COLUMNS: Final = ", ".join(f"r.{c}" for c in READINGS_INSERT_COLUMNS)


def _select_sql(sel: Selection) -> tuple[str, list[object]]:
    where = ["r.superseded_at IS NULL"]
    params: list[object] = []
    for column, value in (
        ("source", sel.source),
        ("device_id", sel.device),
        ("hub_id", sel.hub),
        ("patient_id", sel.patient),
    ):
        if value is not None:
            where.append(f"r.{column} = %s")
            params.append(value)
    if sel.since is not None:
        where.append("r.time >= %s")
        params.append(sel.since)
    if sel.until is not None:
        where.append("r.time < %s")
        params.append(sel.until)
    # whole records: the groups of the first `limit` records, then all their rows
    sql = f"""
        WITH recs AS (
            SELECT DISTINCT r.time, r.hub_id, r.device_id, r.grp FROM readings r
            WHERE {" AND ".join(where)}
            ORDER BY r.time, r.hub_id, r.device_id, r.grp LIMIT %s)
        SELECT {_SELECT_COLUMNS}, p.timezone FROM readings r
        JOIN recs USING (time, hub_id, device_id, grp)
        JOIN patients p ON p.patient_id = r.patient_id
        WHERE r.superseded_at IS NULL
        ORDER BY r.time, r.hub_id, r.device_id, r.grp, r.panel NULLS FIRST, r.mdc, r.key"""
    params.append(sel.limit + 1)
    return sql, params


def _stored(row: dict[str, Any]) -> NormalizedReading:
    values = {c: row[c] for c in READINGS_INSERT_COLUMNS}
    values["loinc"] = tuple(values["loinc"])
    values["flags"] = tuple(values["flags"])
    values["raw"] = bytes(values["raw"])
    return NormalizedReading(**values)


def redecode(source: str, raw: bytes) -> Measurement:
    """One record's bytes through the current driver (framed protocols through a fresh framer,
    which must give exactly one record). Raises DecodeError or KeyError."""
    driver = registry.get(source)
    if driver.framer is None:
        return driver.decode(raw)
    framer = driver.framer()
    out = [*framer.feed(raw), *framer.flush()]
    errors = [r for r in out if isinstance(r, DecodeError)]
    if errors:
        raise errors[0]
    records = [r for r in out if isinstance(r, Measurement)]
    if len(records) != 1:
        raise DecodeError(source, "frame", 0, f"{len(records)} records in one stored frame")
    return records[0]


def _context(rows: Sequence[NormalizedReading], tz: str) -> RecordContext:
    first = rows[0]
    received = first.received_at.astimezone(UTC)
    ns = (received - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    return RecordContext(
        device=first.device_id,
        patient=first.patient_id,
        received_at=received,
        received_ns=ns,
        clock_set_by_hub=any(r.time_source == "device" for r in rows),
        tz=ZoneInfo(tz),
        hub_clock=first.hub_clock,  # type: ignore[arg-type]  # stored from a valid HubClock
    )


def _text(v: object) -> object:
    if isinstance(v, Decimal):
        return str(v)  # 2.00 is not 2.0: the scale is the recorded precision
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    return v


def _differs(old: NormalizedReading, new: NormalizedReading) -> tuple[str, ...]:
    return tuple(f for f in COMPARED if _text(getattr(old, f)) != _text(getattr(new, f)))


def _content_key(old: NormalizedReading, new: NormalizedReading) -> str:
    content = json.dumps([str(_text(getattr(new, f))) for f in COMPARED])
    return contract.idempotency_key(
        device=new.device_id,
        patient=new.patient_id,
        mdc=new.mdc,
        time_token=old.key,
        supplemental=f"reprocess:{content}",
    )


def _record_plan(
    rows: list[NormalizedReading], tz: str, now: datetime
) -> tuple[list[Diff], int, Problem | None]:
    """(diffs, unchanged readings, problem) for one stored device record."""
    first = rows[0]

    def problem(reason: str) -> tuple[list[Diff], int, Problem]:
        keys = tuple(r.key for r in rows)
        return [], 0, Problem(first.hub_id, first.device_id, first.time, keys, reason)

    try:
        m = redecode(first.source, first.raw)
    except KeyError:
        return problem(f"no driver {first.source!r} any more")
    except DecodeError as exc:
        return problem(f"does not decode: {exc}")
    if not is_forwarded(m):
        return problem(f"decodes to a {m.kind} record, not a reading")
    fresh: list[NormalizedReading] = []
    for reading in to_readings(m, _context(rows, tz)):
        checked = check_reading(
            msgspec.Raw(msgspec.json.encode(reading)),
            first.hub_id,
            now=now,
            max_future_skew=MAX_FUTURE_SKEW,
        )
        if isinstance(checked, Reject):
            return problem(f"the corrected reading would be rejected: {checked.reason}")
        fresh.append(checked)
    # old and new matched by metric and occurrence (a record carries an MDC code once, mostly)
    olds: dict[tuple[int, int], NormalizedReading] = {}
    news: dict[tuple[int, int], NormalizedReading] = {}
    for side, source in ((olds, rows), (news, fresh)):
        seen: Counter[int] = Counter()
        for r in source:
            side[(r.mdc, seen[r.mdc])] = r
            seen[r.mdc] += 1
    diffs: list[Diff] = []
    unchanged = 0
    for k in sorted(olds.keys() | news.keys()):
        old, new = olds.get(k), news.get(k)
        if old is not None and new is not None:
            fields = _differs(old, new)
            if not fields:
                unchanged += 1
                continue
            if new.key == old.key:
                new = msgspec.structs.replace(new, key=_content_key(old, new))
            diffs.append(Diff(Change.CHANGED, old, new, fields))
        elif old is not None:
            diffs.append(Diff(Change.REMOVED, old, None, COMPARED))
        elif new is not None:
            diffs.append(Diff(Change.ADDED, None, new, COMPARED))
    return diffs, unchanged, None


async def plan(
    conn: psycopg.AsyncConnection[Any], sel: Selection, now: datetime | None = None
) -> Plan:
    """What a run over ``sel`` would change (reads only)."""
    now = now or datetime.now(UTC)
    sql, params = _select_sql(sel)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        rows = await cur.fetchall()
    records: dict[tuple[datetime, str, str, str], list[NormalizedReading]] = defaultdict(list)
    zones: dict[tuple[datetime, str, str, str], str] = {}
    for row in rows:
        k = (row["time"], row["hub_id"], row["device_id"], row["grp"])
        records[k].append(_stored(row))
        zones[k] = row["timezone"]
    truncated = len(records) > sel.limit
    keys = sorted(records)[: sel.limit]
    diffs: list[Diff] = []
    problems: list[Problem] = []
    unchanged = 0
    for k in keys:
        d, u, p = _record_plan(records[k], zones[k], now)
        diffs += d
        unchanged += u
        if p is not None:
            problems.append(p)
    return Plan(
        selection=sel,
        records=len(keys),
        readings=sum(len(records[k]) for k in keys),
        unchanged=unchanged,
        diffs=tuple(diffs),
        problems=tuple(problems),
        truncated=truncated,
    )


_INSERT: Final = (
    f"INSERT INTO readings ({', '.join(READINGS_INSERT_COLUMNS)}) VALUES "
    f"({', '.join(['%s'] * len(READINGS_INSERT_COLUMNS))}) ON CONFLICT (key, time) DO NOTHING"
)


def _summary(p: Plan) -> dict[str, int]:
    kinds = Counter(d.change.value for d in p.diffs)
    return {
        "records": p.records,
        "readings": p.readings,
        "unchanged": p.unchanged,
        **{c.value: kinds.get(c.value, 0) for c in Change},
        "problems": len(p.problems),
    }


async def apply(
    conn: psycopg.AsyncConnection[Any],
    p: Plan,
    *,
    actor: str,
    reason: str,
    at: datetime | None = None,
) -> Applied:
    """Record plan ``p`` (one transaction), then refresh the aggregates over its time range.
    ``conn`` must be in autocommit mode (the TimescaleDB refresh cannot run in a transaction)."""
    if not actor.strip() or not reason.strip():
        raise ReprocessError("an applied run needs an actor and a reason")
    at = at or datetime.now(UTC)
    superseded: list[NormalizedReading] = [d.old for d in p.diffs if d.old is not None]
    fresh: list[NormalizedReading] = [d.new for d in p.diffs if d.new is not None]
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO reprocess_runs (started_at, actor, reason, selection, summary) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING run_id",
            (at, actor, reason, json.dumps(p.selection.as_json()), json.dumps(_summary(p))),
        )
        row = await cur.fetchone()
        assert row is not None
        run = int(row[0])
        for old in superseded:
            cur = await conn.execute(
                "UPDATE readings SET superseded_at = %s, superseded_run = %s "
                "WHERE key = %s AND time = %s AND superseded_at IS NULL",
                (at, run, old.key, old.time),
            )
            if cur.rowcount != 1:
                raise ReprocessError(
                    f"reading {old.key} at {old.time.isoformat()} changed since the plan was made"
                )
        inserted: list[NormalizedReading] = []
        linked = 0
        for new in fresh:
            cur = await conn.execute(_INSERT, new.row())
            if cur.rowcount == 1:
                inserted.append(new)
            else:
                linked += 1  # the corrected reading is stored already (a hub re-sent it)
        async with conn.cursor() as vc:
            await vc.executemany(
                "INSERT INTO reading_versions (run_id, change, patient_id, old_key, old_time, "
                "new_key, new_time, diff) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        run,
                        d.change.value,
                        d.patient_id,
                        d.old.key if d.old else None,
                        d.old.time if d.old else None,
                        d.new.key if d.new else None,
                        d.new.time if d.new else None,
                        json.dumps(_diff_json(d)),
                    )
                    for d in p.diffs
                ],
            )
        old_keys = [r.key for r in superseded]
        note = f"reprocess run {run}: {reason}"
        entered = await clinical.enter_in_error(
            conn, old_keys, f"reprocess:{actor}", note, at, run=run
        )
        cur = await conn.execute(
            "UPDATE alerts SET acknowledged_at = %s, acknowledged_by = %s "
            "WHERE acknowledged_at IS NULL AND occurrences = 1 AND reading_key = ANY(%s)",
            (at, f"reprocess run {run}: entered in error", old_keys),
        )
        legacy_closed = cur.rowcount
        await raise_alerts(conn, inserted)
        changed = await clinical.evaluate_batch(conn, inserted, at)
        await conn.execute(
            "UPDATE reprocess_runs SET summary = summary || %s WHERE run_id = %s",
            (
                json.dumps(
                    {
                        "superseded": len(superseded),
                        "inserted": len(inserted),
                        "linked": linked,
                        "alerts_entered_in_error": entered,
                        "legacy_alerts_closed": legacy_closed,
                    }
                ),
                run,
            ),
        )
    span = _span(p)
    if span is not None:
        await refresh_aggregates(conn, *span)
    return Applied(
        run,
        len(superseded),
        len(inserted),
        linked,
        tuple(entered),
        legacy_closed,
        sum(1 for a in changed if a.event_ids),
        span,
    )


def _span(p: Plan) -> tuple[datetime, datetime] | None:
    times = [r.time for d in p.diffs for r in (d.old, d.new) if r is not None]
    if not times:
        return None
    # whole local days (the daily aggregate's buckets are at most a day long, any zone)
    return min(times) - timedelta(days=1), max(times) + timedelta(days=1)


async def refresh_aggregates(
    conn: psycopg.AsyncConnection[Any], lo: datetime, hi: datetime
) -> None:
    """Re-materialise the aggregates over [lo, hi) (both storage modes; autocommit ``conn``)."""
    cur = await conn.execute("SELECT to_regclass('readings_hourly_mat') IS NOT NULL")
    row = await cur.fetchone()
    if row is not None and row[0]:
        await conn.execute(
            "SELECT telehub_refresh_aggregates(%s, LEAST(%s, "
            "(SELECT max(materialised_until) FROM telehub_aggregate_state)))",
            (lo, hi),
        )
        return
    for view in ("readings_hourly", "readings_daily"):
        await conn.execute(f"CALL refresh_continuous_aggregate('{view}', %s, %s)", (lo, hi))


# -- the command ---------------------------------------------------------------------------------


def _reading_json(r: NormalizedReading, fields: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": r.key}
    for f in ("time", "mdc", "value", "unit", "special", "flags", *fields):
        v = getattr(r, f)
        out[f] = (
            str(v)
            if isinstance(v, Decimal)
            else v.isoformat()
            if isinstance(v, datetime)
            else list(v)
            if isinstance(v, tuple)
            else v
        )
    return out


def _diff_json(d: Diff) -> dict[str, Any]:
    r = d.old or d.new
    assert r is not None
    return {
        "change": d.change.value,
        "patient": r.patient_id,
        "hub": r.hub_id,
        "device": r.device_id,
        "source": r.source,
        "fields": list(d.fields) if d.change is Change.CHANGED else [],
        "old": None if d.old is None else _reading_json(d.old, d.fields),
        "new": None if d.new is None else _reading_json(d.new, d.fields),
    }


def plan_json(p: Plan) -> dict[str, Any]:
    return {
        "selection": p.selection.as_json(),
        "summary": _summary(p),
        "truncated": p.truncated,
        "changes": [_diff_json(d) for d in p.diffs],
        "problems": [
            {
                "hub": x.hub_id,
                "device": x.device_id,
                "time": x.time.isoformat(),
                "keys": list(x.keys),
                "reason": x.reason,
            }
            for x in p.problems
        ],
    }


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return t


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="telehub reprocess",
        description="decode stored readings' raw bytes again with the current drivers; "
        "show the difference (default) or record corrected versions (--apply)",
    )
    ap.add_argument("--database-url", default=os.environ.get("TELEHUB_DATABASE_URL"))
    ap.add_argument("--source", help="driver key, e.g. 2a9d")
    ap.add_argument("--device")
    ap.add_argument("--hub")
    ap.add_argument("--patient")
    ap.add_argument("--since", type=_when, help="event time from (ISO 8601 with offset)")
    ap.add_argument("--until", type=_when, help="event time before (ISO 8601 with offset)")
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most records per run")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show the difference (default)")
    mode.add_argument("--apply", action="store_true", help="record the corrected versions")
    ap.add_argument("--reason", help="why (required with --apply; kept with the run)")
    ap.add_argument("--actor", default=os.environ.get("USER", ""), help="who (default $USER)")
    return ap


async def _run(args: argparse.Namespace) -> int:
    sel = Selection(
        args.source, args.device, args.hub, args.patient, args.since, args.until, args.limit
    )
    async with await psycopg.AsyncConnection.connect(args.database_url, autocommit=True) as conn:
        p = await plan(conn, sel)
        out = plan_json(p)
        if args.apply and p.diffs:
            done = await apply(conn, p, actor=args.actor, reason=args.reason)
            out["applied"] = {
                "run": done.run_id,
                "superseded": done.superseded,
                "inserted": done.inserted,
                "linked_existing": done.linked_existing,
                "alerts_entered_in_error": list(done.alerts_entered_in_error),
                "legacy_alerts_closed": done.legacy_alerts_closed,
                "alerts_changed": done.alerts_changed,
            }
        else:
            out["applied"] = None
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked (exits 2 with a message on a bad one)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error("no database: give --database-url or set TELEHUB_DATABASE_URL")
    if args.limit < 1:
        ap.error("--limit must be at least 1")
    if args.apply and not (args.reason or "").strip():
        ap.error("--apply needs --reason (kept with the run, for the audit trail)")
    if args.apply and not args.actor.strip():
        ap.error("--apply needs --actor (no $USER here)")
    if args.since and args.until and args.since >= args.until:
        ap.error("--since must be before --until")
    return args


async def run(args: argparse.Namespace) -> int:
    """Plan (and with ``--apply`` record) a run; prints JSON; 1 when it cannot go on."""
    try:
        return await _run(args)
    except ReprocessError as exc:
        sys.stderr.write(f"telehub reprocess: {exc}\n")
        return 1
    except psycopg.Error as exc:
        sys.stderr.write(f"telehub reprocess: database: {exc}\n")
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse(argv)))
