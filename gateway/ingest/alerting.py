"""Alerts for newly stored readings, inside the batch transaction (SCHEMA.md).

For the readings inserted by this batch (duplicates never alert twice): load the enabled rules of
their patients, evaluate each reading with :func:`gateway.rules.evaluate`, and group the breaches
by (patient, rule). Per group, in (patient, rule) order (so that ingesters sharing a subscription
take the row locks in one order and cannot deadlock), one upsert against the partial unique index
``alerts_one_open``:

* no open alert for that patient and rule → a new alert (value/reading = the group's earliest
  breach, ``occurrences`` = the group's breaches, ``last_value``/``last_seen_at`` = its latest),
  plus one ``alert_deliveries`` row per webhook of every organisation that follows the patient;
* an open alert exists → ``occurrences`` += the group's breaches and ``last_value``/
  ``last_seen_at`` move to the latest breach (unless an older reading arrived late).

Each raised or updated alert is announced with ``NOTIFY telehub_alerts, '<alert_id>'``, delivered
by PostgreSQL at commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from gateway import rules
from gateway.ingest.model import AlertChange, NormalizedReading

CHANNEL = "telehub_alerts"

_UPSERT = """
INSERT INTO alerts (patient_id, rule_id, reading_key, reading_time, mdc, value, unit, severity,
                    message, occurrences, last_value, last_seen_at)
VALUES (%(patient)s, %(rule)s, %(key)s, %(time)s, %(mdc)s, %(value)s, %(unit)s, %(severity)s,
        %(message)s, %(n)s, %(last_value)s, %(last_seen)s)
ON CONFLICT (patient_id, rule_id) WHERE acknowledged_at IS NULL DO UPDATE SET
    occurrences = alerts.occurrences + EXCLUDED.occurrences,
    last_value = CASE WHEN alerts.last_seen_at IS NULL
                        OR EXCLUDED.last_seen_at >= alerts.last_seen_at
                      THEN EXCLUDED.last_value ELSE alerts.last_value END,
    last_seen_at = GREATEST(alerts.last_seen_at, EXCLUDED.last_seen_at)
RETURNING alert_id, (xmax = 0) AS inserted
"""

_DELIVERIES = """
INSERT INTO alert_deliveries (alert_id, webhook_id)
SELECT %s, w.webhook_id FROM webhooks w
JOIN patient_access pa ON pa.org_id = w.org_id
WHERE pa.patient_id = %s
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    changes: tuple[AlertChange, ...] = ()
    skipped_unit: int = 0


async def load_rules(
    conn: psycopg.AsyncConnection[Any], patients: Sequence[str]
) -> list[rules.Rule]:
    cur = await conn.execute(
        "SELECT rule_id, patient_id, mdc, op, threshold, unit, severity, description "
        "FROM rules WHERE enabled AND patient_id = ANY(%s) ORDER BY rule_id",
        (list(patients),),
    )
    return [rules.Rule(*row) for row in await cur.fetchall()]


async def raise_alerts(
    conn: psycopg.AsyncConnection[Any], inserted: Sequence[NormalizedReading]
) -> AlertOutcome:
    patients = {r.patient_id for r in inserted if r.value is not None}
    if not patients:
        return AlertOutcome()
    # a reading is evaluated against its patient's rules for its metric only (evaluate() would
    # skip the others anyway), and only if it is a clinical observation
    by_metric: dict[tuple[str, int], list[rules.Rule]] = defaultdict(list)
    for rule in await load_rules(conn, sorted(patients)):
        by_metric[(rule.patient_id, rule.mdc)].append(rule)
    if not by_metric:
        return AlertOutcome()
    breaching: list[tuple[NormalizedReading, tuple[rules.Breach, ...]]] = []
    skipped = 0
    for reading in inserted:
        metric_rules = by_metric.get((reading.patient_id, reading.mdc))
        if metric_rules is None or not rules.is_evaluable(reading):
            continue
        ev = rules.evaluate(reading, metric_rules)
        skipped += ev.skipped_unit
        if ev.breaches:
            breaching.append((reading, ev.breaches))
    breaching.sort(key=lambda h: h[0].time)  # stable: readings of one time keep their order
    groups: dict[tuple[str, int], list[tuple[NormalizedReading, rules.Breach]]] = defaultdict(list)
    for reading, breaches in breaching:
        for b in breaches:
            groups[(reading.patient_id, b.rule.rule_id)].append((reading, b))
    changes: list[AlertChange] = []
    # in (patient, rule) order: ingesters sharing a subscription lock alert rows in one order
    for (patient, rule_id), hits in sorted(groups.items(), key=lambda kv: kv[0]):
        first_reading, first = hits[0]
        last_reading, last = hits[-1]
        cur = await conn.execute(
            _UPSERT,
            {
                "patient": patient,
                "rule": rule_id,
                "key": first_reading.key,
                "time": first_reading.time,
                "mdc": first_reading.mdc,
                "value": first.value,
                "unit": first.unit,
                "severity": first.rule.severity,
                "message": first.message,
                "n": len(hits),
                "last_value": last.value,
                "last_seen": last_reading.time,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        alert_id, new = int(row[0]), bool(row[1])
        if new:
            await conn.execute(_DELIVERIES, (alert_id, patient))
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(alert_id)))
        changes.append(AlertChange(alert_id, patient, rule_id, new, len(hits)))
    return AlertOutcome(tuple(changes), skipped)
