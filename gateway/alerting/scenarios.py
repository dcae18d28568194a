"""``telehub rules test FILE.toml...``: clinical scenarios through the real ingest path.

Each scenario file gets a fresh database (created next to ``TELEHUB_DATABASE_URL``'s database and
dropped afterwards), one patient on the declared programmes, and a simulated clock. Steps run in
order; every reading goes through :func:`gateway.ingest.validate.check_reading` (the contract)
and :func:`gateway.ingest.store.write_batch` (the ingest transaction that evaluates the rules),
exactly as a hub's message would. Format (docs/alerting.md)::

    name = "S1: yellow then red is one alert"
    [patient]
    timezone = "Europe/Copenhagen"          # default
    programmes = ["copd"]
    programmes_from = 2026-01-01T00:00:00Z
    [[patient.suppressions]]                # optional
    from = 2026-02-01T00:00:00Z
    to = 2026-02-05T00:00:00Z
    reason = "admitted"

    [[steps]]
    at = 2026-02-01T08:00:00+01:00           # the clock (received time) for this step
    readings = [{metric = "spo2", value = "90"}]   # unit defaults per metric; optional:
                                             # time (effective), key, flags, unit
    [[steps]]
    at = 2026-02-01T09:00:00+01:00
    action = "ack"                           # ack | assign | snooze | resolve
    rule = "S1"
    note = "called the patient"

    [[expect]]
    rule = "S1"                              # the live alert of this rule (or state=resolved)
    level = "red"
    state = "open"
    occurrences = 2
    late = false
    version = 1
    [[expect]]
    rule = "W1"
    absent = true                            # no alert of this rule at all
    [[expect]]
    events = ["created", "occurrence", "severity_changed"]   # event types of the rule's alerts
    rule = "S1"

Exit status 0 if every expectation holds, 1 if any misses, 2 on a malformed scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import psycopg

from drivers import codes
from gateway import catalog
from gateway.alerting import store
from gateway.alerting.templates import Programme
from gateway.db import migrate
from gateway.ingest.model import NormalizedReading
from gateway.ingest.store import BatchWrite, WriteMode, prepare_session, write_batch
from gateway.ingest.validate import check_reading
from wire import contract

PATIENT: Final = "scenario-patient"
HUB: Final = "scenario-hub"
DEVICE: Final = "scenario-device"

#: metric name -> (MDC code, default unit)
METRICS: Final[dict[str, tuple[int, str]]] = {
    "weight": (codes.MDC_MASS_BODY_ACTUAL, "kg"),
    "spo2": (codes.MDC_PULS_OXIM_SAT_O2, "%"),
    "pulse": (codes.MDC_PULS_RATE_NON_INV, "/min"),
    "oximeter_pulse": (codes.MDC_PULS_OXIM_PULS_RATE, "/min"),
    "systolic": (codes.MDC_PRESS_BLD_NONINV_SYS, "mm[Hg]"),
    "diastolic": (codes.MDC_PRESS_BLD_NONINV_DIA, "mm[Hg]"),
    "temperature": (codes.MDC_TEMP_BODY, "Cel"),
    "glucose": (codes.MDC_CONC_GLU_CAPILLARY_PLASMA, "mmol/L"),
}


class ScenarioError(ValueError):
    """A malformed scenario file."""


@dataclass
class Outcome:
    file: str
    name: str
    lines: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.lines)


def _dt(v: Any, what: str) -> datetime:
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v
    raise ScenarioError(f"{what}: expected a date-time with an offset, got {v!r}")


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def _reading(spec: dict[str, Any], at: datetime, seq: _Counter) -> NormalizedReading:
    metric = spec.get("metric")
    if metric not in METRICS:
        raise ScenarioError(f"reading: unknown metric {metric!r} (known: {sorted(METRICS)})")
    mdc, default_unit = METRICS[metric]
    unit = spec.get("unit", default_unit)
    mdc_unit = catalog.mdc_unit_code(unit)
    if mdc_unit is None:
        raise ScenarioError(f"reading: unknown unit {unit!r}")
    time = _dt(spec.get("time", at), "reading.time")
    n = seq.next()
    key = spec.get("key") or contract.idempotency_key(
        device=DEVICE, patient=PATIENT, mdc=mdc, time_token=f"{time.isoformat()}#{n}"
    )
    raw = {
        "key": key, "device": DEVICE, "patient": PATIENT, "source": "scenario", "kind": "spot",
        "mdc": mdc, "loinc": [], "unit": unit, "mdc_unit": mdc_unit,
        "value": str(spec["value"]), "group": f"g{n}", "flags": list(spec.get("flags", [])),
        "time": time.isoformat(), "time_source": "device", "received_at": at.isoformat(),
        "hub_clock": "synchronized", "raw": "00",
    }  # fmt: skip
    r = check_reading(
        msgspec.Raw(msgspec.json.encode(raw)), HUB, now=at, max_future_skew=timedelta(minutes=5)
    )
    if not isinstance(r, NormalizedReading):
        raise ScenarioError(f"reading rejected by the contract: {r.reason}")
    return r


async def _setup(conn: psycopg.AsyncConnection[Any], doc: dict[str, Any]) -> None:
    p = doc.get("patient", {})
    await conn.execute(
        "INSERT INTO patients (patient_id, timezone) VALUES (%s, %s)",
        (PATIENT, p.get("timezone", "Europe/Copenhagen")),
    )
    await conn.execute("INSERT INTO hubs (hub_id) VALUES (%s)", (HUB,))
    await conn.execute(
        "INSERT INTO devices (hub_id, device_id, patient_id) VALUES (%s, %s, %s)",
        (HUB, DEVICE, PATIENT),
    )
    since = _dt(p.get("programmes_from"), "patient.programmes_from")
    for name in p.get("programmes", []):
        try:
            programme = Programme(name)
        except ValueError as e:
            raise ScenarioError(f"patient.programmes: unknown programme {name!r}") from e
        await store.activate_programme(conn, PATIENT, programme, since, "scenario")
    for o in p.get("overrides", []):
        await store.override_rule(
            conn, PATIENT, o["rule"], author=o.get("author", "scenario"), reason=o["reason"],
            effective_from=_dt(o["effective_from"], "override.effective_from"),
            enabled=o.get("enabled"),
        )  # fmt: skip
    for s in p.get("suppressions", []):
        await conn.execute(
            "INSERT INTO patient_suppressions (patient_id, starts_at, ends_at, reason, author) "
            "VALUES (%s, %s, %s, %s, 'scenario')",
            (PATIENT, _dt(s["from"], "suppression.from"), _dt(s["to"], "suppression.to"),
             s["reason"]),
        )  # fmt: skip
    await conn.commit()


async def _live_alert(conn: psycopg.AsyncConnection[Any], rule: str) -> int:
    cur = await conn.execute(
        "SELECT alert_id FROM clinical_alerts WHERE patient_id = %s AND rule_code = %s "
        "ORDER BY (state <> 'resolved') DESC, alert_id DESC LIMIT 1",
        (PATIENT, rule),
    )
    row = await cur.fetchone()
    if row is None:
        raise ScenarioError(f"action: no alert of rule {rule!r}")
    return int(row[0])


async def _step(
    conn: psycopg.AsyncConnection[Any], step: dict[str, Any], mode: WriteMode, seq: _Counter
) -> None:
    at = _dt(step.get("at"), "step.at")
    mode.clock = lambda: at
    if "readings" in step:
        batch = BatchWrite(readings=[_reading(r, at, seq) for r in step["readings"]])
        await write_batch(conn, batch, mode)
        return
    action = step.get("action")
    alert_id = await _live_alert(conn, str(step.get("rule")))
    actor = step.get("actor", "scenario-clinician")
    try:
        async with conn.transaction():
            if action == "ack":
                await store.acknowledge(conn, alert_id, actor, step.get("note"), at)
            elif action == "assign":
                await store.assign(conn, alert_id, actor, step.get("assignee"), at)
            elif action == "snooze":
                until = at + timedelta(minutes=int(step.get("minutes", 60)))
                await store.snooze(conn, alert_id, actor=actor, until=until,
                                   reason=step.get("reason", ""), at=at)  # fmt: skip
            elif action == "resolve":
                await store.resolve(conn, alert_id, actor, step.get("note"), at)
            else:
                raise ScenarioError(f"step: unknown action {action!r}")
    except store.TransitionRefused as e:
        if step.get("refused") != e.code.value:
            raise ScenarioError(f"step {action}: refused ({e.code.value}): {e}") from e
        return
    if "refused" in step:
        raise ScenarioError(f"step {action}: expected refusal {step['refused']!r}, it was allowed")


async def _check(conn: psycopg.AsyncConnection[Any], exp: dict[str, Any]) -> tuple[bool, str]:
    rule = exp.get("rule")
    if "count" in exp:
        cur = await conn.execute("SELECT count(*) FROM clinical_alerts")
        row = await cur.fetchone()
        n = int(row[0]) if row else 0
        return n == exp["count"], f"alerts in all: {n} (expected {exp['count']})"
    if "events" in exp:
        cur = await conn.execute(
            "SELECT e.type FROM alert_event e JOIN clinical_alerts a USING (alert_id) "
            "WHERE a.rule_code = %s ORDER BY e.event_id",
            (rule,),
        )
        got = [r[0] for r in await cur.fetchall()]
        return got == exp["events"], f"{rule} events {got} (expected {exp['events']})"
    if "notified" in exp:
        cur = await conn.execute(
            "SELECT count(*) FROM alert_event e JOIN clinical_alerts a USING (alert_id) "
            "WHERE a.rule_code = %s AND (e.payload->>'notify')::boolean",
            (rule,),
        )
        row = await cur.fetchone()
        n = int(row[0]) if row else 0
        return n == exp["notified"], f"{rule} paging events: {n} (expected {exp['notified']})"
    cur = await conn.execute(
        "SELECT level, state, occurrences, late, rule_version FROM clinical_alerts "
        "WHERE patient_id = %s AND rule_code = %s "
        "ORDER BY (state <> 'resolved') DESC, alert_id DESC LIMIT 1",
        (PATIENT, rule),
    )
    row = await cur.fetchone()
    if exp.get("absent"):
        return row is None, f"{rule}: {'absent' if row is None else 'present'} (expected absent)"
    if row is None:
        return False, f"{rule}: no alert (expected one)"
    alert: dict[str, Any] = {"level": row[0], "state": row[1], "occurrences": row[2],
                             "late": row[3], "version": row[4]}  # fmt: skip
    misses = [
        f"{k}={alert[k]!r} (expected {v!r})" for k, v in exp.items() if k in alert and alert[k] != v
    ]
    desc = ", ".join(f"{k}={alert[k]}" for k in alert if k in exp)
    return not misses, f"{rule}: {desc}" if not misses else f"{rule}: " + "; ".join(misses)


def _db_url(base: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(base)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(f"{path}: {e}") from e


async def run_file(path: Path, doc: dict[str, Any], admin_url: str) -> Outcome:
    out = Outcome(str(path), str(doc.get("name", path.stem)))
    name = f"telehub_rules_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(admin_url, name)
    try:
        await asyncio.to_thread(migrate, url)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await prepare_session(conn)
            await conn.commit()
            await _setup(conn, doc)
            mode, seq = WriteMode(), _Counter()
            for step in doc.get("steps", []):
                await _step(conn, step, mode, seq)
            for exp in doc.get("expect", []):
                out.lines.append(await _check(conn, exp))
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out


async def run(paths: Sequence[Path], admin_url: str) -> list[Outcome]:
    docs = [(p, load(p)) for p in paths]
    return [await run_file(p, doc, admin_url) for p, doc in docs]


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="telehub rules test", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, help="write a JSON report here")
    ap.add_argument("--database-url", default=os.environ.get("TELEHUB_DATABASE_URL"))
    args = ap.parse_args(argv)
    if not args.database_url:
        sys.stderr.write("telehub rules test: set TELEHUB_DATABASE_URL or --database-url\n")
        return 2
    try:
        outcomes = asyncio.run(run(args.files, args.database_url))
    except (ScenarioError, KeyError) as e:
        sys.stderr.write(f"telehub rules test: malformed scenario: {e}\n")
        return 2
    for o in outcomes:
        for ok, line in o.lines:
            sys.stdout.write(f"{'PASS' if ok else 'MISS'} {o.file} [{o.name}] {line}\n")
    if args.json:
        report = [{"file": o.file, "name": o.name, "ok": o.ok,
                   "expectations": [{"ok": ok, "line": line} for ok, line in o.lines]}
                  for o in outcomes]  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0 if all(o.ok for o in outcomes) else 1
