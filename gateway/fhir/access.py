"""Every read of patient data that the FHIR API does, in one place.

Each function takes the caller (:class:`gateway.api.auth.Principal`) and scopes its query to the
patients that the caller's organisation follows (``patient_access``): a patient that is out of
scope reads exactly like one that does not exist (None / no rows). When the access-checked
database function of the authorisation work lands, these are the functions to re-point at it;
nothing else in :mod:`gateway.fhir` touches patient tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gateway.api.auth import Principal
from gateway.fhir.mapping import StoredReading

Conn = psycopg.AsyncConnection[Any]

_VISIBLE = "EXISTS (SELECT 1 FROM patient_access pa WHERE pa.patient_id = %s AND pa.org_id = %s)"

_COLUMNS = """r.time, r.key, r.patient_id, r.hub_id, r.device_id, r.kind, r.mdc, r.loinc, r.unit,
    r.value, r.special, r.panel, r.grp, r.flags, r.stored_at"""


@dataclass(frozen=True, slots=True)
class PatientRow:
    patient_id: str
    display_name: str | None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    hub_id: str
    device_id: str
    patient_id: str
    model: str | None
    mdcs: tuple[int, ...]  # metrics of its latest readings (for PhdDevice.specialization)


#: One Observation: (time, hub_id, device_id, grp, Observation-level MDC code).
ObservationKey = tuple[datetime, str, str, str, int]

#: Most stored rows one Observation has (the BP panel: systolic, diastolic, mean).
MAX_ROWS_PER_OBSERVATION = 4


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    """A page of a patient's Observations: the paging unit is one Observation, i.e. one
    (device record, Observation-level code) pair, newest first."""

    patient_id: str
    mdcs: frozenset[int] = frozenset()  # Observation-level MDC codes (panel's for a panel)
    loincs: frozenset[str] = frozenset()  # or a stored LOINC coding of a non-panel metric
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    after: ObservationKey | None = None  # keyset cursor: the last Observation of the last page
    limit: int = 50


async def patient(conn: Conn, principal: Principal, patient_id: str) -> PatientRow | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT patient_id, display_name FROM patients WHERE patient_id = %s AND {_VISIBLE}",
            (patient_id, patient_id, principal.org_id),
        )
        row = await cur.fetchone()
    return None if row is None else PatientRow(row["patient_id"], row["display_name"])


async def observation_rows(
    conn: Conn, principal: Principal, q: ObservationQuery
) -> tuple[list[StoredReading], list[ObservationKey], bool]:
    """The rows of every device record that has an Observation on the page, the page's
    Observation identities ``(time, hub, device, grp, code)`` in order, and whether more follow.
    Out-of-scope patients have no rows."""
    where = [
        "r.patient_id = %s",
        "r.superseded_at IS NULL",
        _VISIBLE.replace("%s", "r.patient_id", 1),
    ]
    params: list[object] = [q.patient_id, principal.org_id]
    if q.start is not None:
        where.append("r.time >= %s")
        params.append(q.start)
    if q.end is not None:
        where.append("r.time < %s")
        params.append(q.end)
    if q.mdcs or q.loincs:
        where.append("(COALESCE(r.panel, r.mdc) = ANY(%s) OR (r.panel IS NULL AND r.loinc && %s))")
        params += [sorted(q.mdcs), sorted(q.loincs)]
    if q.after is not None:
        where.append(
            "(r.time < %s OR (r.time = %s AND (r.hub_id, r.device_id, r.grp, "
            "COALESCE(r.panel, r.mdc)) > (%s, %s, %s, %s)))"
        )
        params += [q.after[0], *q.after]
    # the inner LIMIT (rows, newest first, along readings_patient_time) bounds the work however
    # long the patient's history is; it holds at least limit + 1 Observations
    params += [(q.limit + 1) * MAX_ROWS_PER_OBSERVATION, q.limit + 1]
    async with conn.cursor() as cur:
        await cur.execute(
            f"""SELECT DISTINCT time, hub_id, device_id, grp, code FROM (
                    SELECT r.time, r.hub_id, r.device_id, r.grp, COALESCE(r.panel, r.mdc) AS code
                    FROM visible_readings r WHERE {" AND ".join(where)}
                    ORDER BY 1 DESC, 2, 3, 4, 5 LIMIT %s) s
                ORDER BY 1 DESC, 2, 3, 4, 5 LIMIT %s""",
            params,
        )
        ids = [(t, h, d, g, int(c)) for t, h, d, g, c in await cur.fetchall()]
    more = len(ids) > q.limit
    ids = ids[: q.limit]
    if not ids:
        return [], [], more
    records = sorted({(t, h, d, g) for t, h, d, g, _ in ids})
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM visible_readings r
                JOIN unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[])
                    AS k(time, hub_id, device_id, grp)
                  ON r.time = k.time AND r.hub_id = k.hub_id AND r.device_id = k.device_id
                     AND r.grp = k.grp
                WHERE r.patient_id = %s AND r.superseded_at IS NULL
                ORDER BY r.time DESC, r.key""",
            (
                [k[0] for k in records],
                [k[1] for k in records],
                [k[2] for k in records],
                [k[3] for k in records],
                q.patient_id,
            ),
        )
        rows = [StoredReading.from_row(r) for r in await cur.fetchall()]
    return rows, ids, more


async def devices(conn: Conn, principal: Principal, patient_id: str) -> Sequence[DeviceRow]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT d.hub_id, d.device_id, d.patient_id, d.model,
                   ARRAY(SELECT DISTINCT s.mdc FROM (
                       SELECT r.mdc FROM visible_readings r
                       WHERE r.patient_id = d.patient_id AND r.hub_id = d.hub_id
                         AND r.device_id = d.device_id AND r.superseded_at IS NULL
                       ORDER BY r.time DESC LIMIT 100) s) AS mdcs
                FROM devices d WHERE d.patient_id = %s AND {_VISIBLE}
                ORDER BY d.hub_id, d.device_id""",
            (patient_id, patient_id, principal.org_id),
        )
        return [
            DeviceRow(r["hub_id"], r["device_id"], r["patient_id"], r["model"], tuple(r["mdcs"]))
            for r in await cur.fetchall()
        ]


# -- system context: the push channel (no caller; every patient) -------------------------------
Record = tuple[datetime, str, str, str]  # (time, hub_id, device_id, grp)

#: How far behind the last sweep the next one looks again: longer than any ingest transaction
#: can stay open (the ingester abandons one after ``db_timeout``, 30 s by default), so a row whose
#: ``stored_at`` (its transaction's start) precedes the last sweep but committed after it is
#: still found. The outbox's primary key makes re-finding a record harmless.
SWEEP_LOOKBACK_SECONDS = 300


#: Most ``stored_at`` time one sweep covers: a sweep behind (push switched on with a backfill
#: start, or after an outage) catches up in bounded steps instead of one huge statement.
SWEEP_WINDOW_SECONDS = 3600


async def sweep_into_outbox(conn: Conn) -> tuple[int, bool]:
    """Queue the device records stored since the last sweep (minus the lookback, at most
    ``SWEEP_WINDOW_SECONDS`` further) for push. Returns (records queued, caught up)."""
    async with conn.transaction():
        # one sweep at a time (several workers may run)
        cur = await conn.execute(
            """SELECT swept_to - make_interval(secs => %s),
                      LEAST(now(), swept_to + make_interval(secs => %s))
               FROM fhir_push_state WHERE id FOR UPDATE""",
            (SWEEP_LOOKBACK_SECONDS, SWEEP_WINDOW_SECONDS),
        )
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("fhir_push_state has no row (migration 30 not applied)")
        lo, hi = row
        cur = await conn.execute(
            """INSERT INTO fhir_outbox (time, hub_id, device_id, grp, patient_id)
               SELECT DISTINCT r.time, r.hub_id, r.device_id, r.grp, r.patient_id
               FROM visible_readings r WHERE r.stored_at >= %s AND r.stored_at < %s
                 AND r.superseded_at IS NULL
               ON CONFLICT DO NOTHING""",
            (lo, hi),
        )
        queued = cur.rowcount
        cur = await conn.execute(
            "UPDATE fhir_push_state SET swept_to = %s WHERE id RETURNING swept_to >= now()",
            (hi,),
        )
        done = await cur.fetchone()
    return queued, bool(done and done[0])


async def record_rows(conn: Conn, records: Sequence[Record]) -> list[StoredReading]:
    """Every stored row of these device records."""
    if not records:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM visible_readings r
                JOIN unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[])
                    AS k(time, hub_id, device_id, grp)
                  ON r.time = k.time AND r.hub_id = k.hub_id AND r.device_id = k.device_id
                     AND r.grp = k.grp
                WHERE r.superseded_at IS NULL
                ORDER BY r.time, r.key""",
            ([k[0] for k in records], [k[1] for k in records], [k[2] for k in records],
             [k[3] for k in records]),
        )  # fmt: skip
        return [StoredReading.from_row(r) for r in await cur.fetchall()]


async def push_context(
    conn: Conn, patient_ids: Sequence[str], devices_of: Sequence[tuple[str, str]]
) -> tuple[list[PatientRow], list[DeviceRow]]:
    """The Patient and Device rows the pushed Observations reference."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT patient_id, display_name FROM patients WHERE patient_id = ANY(%s) "
            "ORDER BY patient_id",
            (list(patient_ids),),
        )
        patients = [PatientRow(r["patient_id"], r["display_name"]) for r in await cur.fetchall()]
        await cur.execute(
            """SELECT d.hub_id, d.device_id, d.patient_id, d.model FROM devices d
               JOIN unnest(%s::text[], %s::text[]) AS k(hub_id, device_id)
                 ON d.hub_id = k.hub_id AND d.device_id = k.device_id
               ORDER BY d.hub_id, d.device_id""",
            ([h for h, _ in devices_of], [d for _, d in devices_of]),
        )
        devs = [
            DeviceRow(r["hub_id"], r["device_id"], r["patient_id"], r["model"], ())
            for r in await cur.fetchall()
        ]
    return patients, devs
