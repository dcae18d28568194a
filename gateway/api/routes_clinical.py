"""Clinical endpoints: patients, readings, alerts and acknowledgement.

Every query is scoped to the caller's organisation through ``patient_access``.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from pydantic import AwareDatetime, Field

from gateway.api.audit import AuditEntry, Outcome, RequestId, write_audit, write_audits
from gateway.api.auth import CurrentPrincipal, ensure_patient_visible
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, error_responses, not_found
from gateway.api.hygiene import SAFE_TEXT
from gateway.api.models import (
    AlertList,
    AlertView,
    PatientList,
    PatientOut,
    ReadingOut,
    ReadingsPage,
)
from gateway.notify.alerts import ALERT_COLUMNS, ALERTS_CHANNEL, metric_name

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", responses=error_responses(400, 401, 413, 414, 503))

DEFAULT_RANGE: Final = timedelta(hours=24)
MAX_READINGS: Final = 10_000
DEFAULT_READINGS: Final = 1000
MAX_ALERTS: Final = 1000

PatientId = Annotated[str, Path(min_length=1, max_length=200, pattern=SAFE_TEXT)]


@router.get("/patients", summary="Patients followed by the caller's organisation")
async def list_patients(ctx: Ctx, principal: CurrentPrincipal, rid: RequestId) -> PatientList:
    """Each listed patient's lookup is audited in the same transaction."""
    async with (
        ctx.connect(principal) as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            """SELECT p.patient_id, p.display_name,
                   (SELECT count(*) FROM alerts a
                    WHERE a.patient_id = p.patient_id AND a.acknowledged_at IS NULL
                   )::int AS open_alerts,
                   (SELECT max(r.time) FROM visible_readings r WHERE r.patient_id = p.patient_id
                      AND r.superseded_at IS NULL)
                       AS last_reading_at
               FROM patient_access pa JOIN patients p USING (patient_id)
               WHERE pa.org_id = %s ORDER BY p.patient_id""",
            (principal.org_id,),
        )
        rows = await cur.fetchall()
        await write_audits(
            conn,
            [
                AuditEntry(rid, principal, r["patient_id"], "patients", target=r["patient_id"])
                for r in rows
            ],
        )
    return PatientList(patients=[PatientOut.model_validate(r) for r in rows])


_READING_COLUMNS: Final = """time, time_source, device_time, received_at, hub_clock, key, hub_id,
    device_id, source, kind, mdc, loinc, value::text AS value, unit, mdc_unit, special,
    orig_value::text AS orig_value, orig_unit, panel, grp AS "group", flags, sequence, user_id"""


@router.get(
    "/patients/{patient_id}/readings",
    summary="A patient's readings in a time range (newest first)",
    responses=error_responses(404, 422),
)
async def list_readings(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    patient_id: PatientId,
    from_: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="Start (inclusive), ISO 8601 with offset. Default: `to` minus 24 h.",
        ),
    ] = None,
    to: Annotated[
        AwareDatetime | None,
        Query(description="End (exclusive), ISO 8601 with offset. Default: now."),
    ] = None,
    mdc: Annotated[
        list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None,
        Query(description="Only these MDC metric codes (repeatable).", max_length=50),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS)] = DEFAULT_READINGS,
) -> ReadingsPage:
    end = to or datetime.now(UTC)
    start = from_ or end - DEFAULT_RANGE
    # an out-of-scope patient is 404 whatever the range (and the refused lookup is audited)
    await ensure_patient_visible(ctx, principal, patient_id, request_id=rid, resource="readings")
    if start >= end:
        raise ApiError(422, "invalid_request", "`from` must be before `to`")
    if end - start > ctx.max_range:
        raise ApiError(
            422,
            "invalid_request",
            f"the time range may span at most {ctx.max_range.days} days",
        )
    where = "patient_id = %s AND time >= %s AND time < %s AND superseded_at IS NULL"
    params: list[object] = [patient_id, start, end]
    if mdc:
        where += " AND mdc = ANY(%s)"
        params.append(mdc)
    params.append(limit + 1)
    async with (
        ctx.connect(principal) as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"SELECT {_READING_COLUMNS} FROM visible_readings WHERE {where} "
            "ORDER BY time DESC, key LIMIT %s",
            params,
        )
        rows = await cur.fetchall()
        # the same transaction: if the audit row cannot be written, nothing is returned
        await write_audit(
            conn,
            AuditEntry(
                rid,
                principal,
                patient_id,
                "readings",
                target=patient_id,
                range_from=start,
                range_to=end,
                row_count=min(len(rows), limit),
            ),
        )
    truncated = len(rows) > limit
    readings = [
        ReadingOut.model_validate({**r, "metric": metric_name(r["mdc"])}) for r in rows[:limit]
    ]
    return ReadingsPage(
        patient_id=patient_id,
        from_=start,
        to=end,
        count=len(readings),
        truncated=truncated,
        readings=readings,
    )


@router.get(
    "/alerts",
    summary="Alerts of the patients the caller's organisation follows (newest first)",
    responses=error_responses(404, 422),
)
async def list_alerts(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    status: Literal["open", "acknowledged", "all"] = "open",
    patient_id: Annotated[
        str | None, Query(min_length=1, max_length=200, pattern=SAFE_TEXT)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS)] = 100,
) -> AlertList:
    where = [
        "EXISTS (SELECT 1 FROM patient_access pa WHERE pa.patient_id = a.patient_id "
        "AND pa.org_id = %s)"
    ]
    params: list[object] = [principal.org_id]
    if status == "open":
        where.append("a.acknowledged_at IS NULL")
    elif status == "acknowledged":
        where.append("a.acknowledged_at IS NOT NULL")
    if patient_id is not None:
        await ensure_patient_visible(ctx, principal, patient_id, request_id=rid, resource="alerts")
        where.append("a.patient_id = %s")
        params.append(patient_id)
    params.append(limit)
    async with (
        ctx.connect(principal) as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts a WHERE {' AND '.join(where)} "
            "ORDER BY a.raised_at DESC, a.alert_id DESC LIMIT %s",
            params,
        )
        rows = await cur.fetchall()
        per_patient = Counter(str(r["patient_id"]) for r in rows)
        await write_audits(
            conn,
            [
                AuditEntry(rid, principal, p, "alerts", target=p, row_count=n)
                for p, n in sorted(per_patient.items())
            ],
        )
    return AlertList(alerts=[AlertView.model_validate(r) for r in rows])


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (idempotent: the first acknowledgement is kept)",
    responses=error_responses(404, 422),
)
async def acknowledge_alert(
    ctx: Ctx, principal: CurrentPrincipal, rid: RequestId, alert_id: Annotated[int, Path(ge=1)]
) -> AlertView:
    """Records the clinician and organisation. Acknowledging an acknowledged alert changes
    nothing and returns it as it is (with the first acknowledgement). Once acknowledged, a further
    breach of the same rule raises a new alert."""
    async with ctx.connect(principal) as conn:
        async with conn.transaction():
            cur = await conn.execute(
                """UPDATE alerts a SET acknowledged_at = now(), acknowledged_by = %s,
                       acknowledged_org = %s
                   WHERE a.alert_id = %s AND a.acknowledged_at IS NULL
                     AND EXISTS (SELECT 1 FROM patient_access pa
                                 WHERE pa.patient_id = a.patient_id AND pa.org_id = %s)
                   RETURNING a.alert_id""",
                (principal.actor, principal.org_id, alert_id, principal.org_id),
            )
            if await cur.fetchone() is not None:
                # the live streams of every organisation following the patient update it
                await conn.execute("SELECT pg_notify(%s, %s)", (ALERTS_CHANNEL, str(alert_id)))
                log.info("alert %d acknowledged by org %s", alert_id, principal.org_id)
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as dcur:
            await dcur.execute(
                f"""SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.alert_id = %s
                    AND EXISTS (SELECT 1 FROM patient_access pa
                                WHERE pa.patient_id = a.patient_id AND pa.org_id = %s)""",
                (alert_id, principal.org_id),
            )
            row = await dcur.fetchone()
            if row is not None:
                await write_audit(
                    conn,
                    AuditEntry(
                        rid, principal, row["patient_id"], "alert-ack", target=str(alert_id)
                    ),
                )
            else:
                await dcur.execute(  # an id beyond bigint is nobody's alert
                    "SELECT CASE WHEN %(id)s::numeric <= 9223372036854775807 "
                    "THEN telehub_alert_patient(%(id)s::numeric::bigint, false) END AS patient_id",
                    {"id": alert_id},
                )
                other = await dcur.fetchone()
                await write_audit(
                    conn,
                    AuditEntry(
                        rid,
                        principal,
                        other["patient_id"] if other else None,
                        "alert-ack",
                        target=str(alert_id),
                        outcome=Outcome.DENIED,
                    ),
                )
    if row is None:
        raise not_found("alert")
    return AlertView.model_validate(row)
