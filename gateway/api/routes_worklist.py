"""The clinical worklist (docs/alerting.md): clinical alerts with their lifecycle and events.

Every query is scoped to the caller's organisation through ``patient_access``, like
:mod:`gateway.api.routes_clinical`; an alert of a patient the organisation does not follow is
answered 404, exactly like one that does not exist.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.alerting import store
from gateway.api.audit import RequestId
from gateway.api.auth import CurrentPrincipal, Principal, ensure_patient_visible
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, error_responses, not_found
from gateway.api.hygiene import SAFE_TEXT

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/worklist", responses=error_responses(400, 401, 413, 414, 503))

MAX_ITEMS: Final = 1000
AlertId = Annotated[int, Path(ge=1)]
#: Free text (notes, reasons) may hold newlines and tabs but never NUL, which PostgreSQL text
#: cannot store.
_NO_NUL: Final = r"^[^\x00]*$"
_Text = Annotated[str, Field(max_length=2000, pattern=_NO_NUL)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AckIn(_In):
    note: _Text | None = None


class AssignIn(_In):
    assignee: Annotated[str, Field(min_length=1, max_length=200, pattern=SAFE_TEXT)] | None = Field(
        description="A clinician; null returns the alert to the care team."
    )


class SnoozeIn(_In):
    until: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=_NO_NUL)]


class ResolveIn(_In):
    note: _Text | None = None


class WorklistAlert(BaseModel):
    model_config = ConfigDict(frozen=True)
    alert_id: int
    patient_id: str
    rule_code: str
    rule_version: int
    params: dict[str, str] = Field(description="The resolved rule parameters that raised it.")
    level: Literal["red", "yellow", "blue", "technical", "info"]
    state: Literal["pending", "open", "acknowledged", "resolved"]
    late: bool
    reading_key: str
    effective_at: datetime
    value: str | None
    unit: str | None
    message: str
    occurrences: int
    assigned_to: str | None
    snoozed_until: datetime | None
    created_at: datetime
    updated_at: datetime


class WorklistPage(BaseModel):
    alerts: list[WorklistAlert]


class EventOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    event_id: int
    alert_id: int
    type: str
    level: str | None
    actor: str
    note: str | None
    payload: dict[str, Any]
    at: datetime


class EventList(BaseModel):
    events: list[EventOut]


_COLUMNS: Final = """a.alert_id, a.patient_id, a.rule_code, a.rule_version, a.params, a.level,
    a.state, a.late, a.reading_key, a.effective_at, a.value::text AS value, a.unit, a.message,
    a.occurrences, a.assigned_to, a.snoozed_until, a.created_at, a.updated_at"""
_VISIBLE: Final = (
    "EXISTS (SELECT 1 FROM patient_access pa WHERE pa.patient_id = a.patient_id AND pa.org_id = %s)"
)


@router.get(
    "",
    summary="Clinical alerts of the patients the caller's organisation follows",
    responses=error_responses(404, 422),
)
async def list_worklist(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    state: Literal["live", "pending", "open", "acknowledged", "resolved", "all"] = "live",
    patient_id: Annotated[
        str | None, Query(min_length=1, max_length=200, pattern=SAFE_TEXT)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 100,
) -> WorklistPage:
    where = [_VISIBLE]
    params: list[object] = [principal.org_id]
    if state == "live":
        where.append("a.state <> 'resolved'")
    elif state != "all":
        where.append("a.state = %s")
        params.append(state)
    if patient_id is not None:
        await ensure_patient_visible(
            ctx, principal, patient_id, request_id=rid, resource="worklist"
        )
        where.append("a.patient_id = %s")
        params.append(patient_id)
    params.append(limit)
    async with ctx.connect(principal) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM clinical_alerts a WHERE {' AND '.join(where)} "
            "ORDER BY a.created_at DESC, a.alert_id DESC LIMIT %s",
            params,
        )
        rows = await cur.fetchall()
    return WorklistPage(alerts=[WorklistAlert.model_validate(r) for r in rows])


async def _visible(conn: Any, principal: Principal, alert_id: int) -> None:
    cur = await conn.execute(
        f"SELECT 1 FROM clinical_alerts a WHERE a.alert_id = %s AND {_VISIBLE}",
        (alert_id, principal.org_id),
    )
    if await cur.fetchone() is None:
        raise not_found("alert")


async def _one(conn: Any, alert_id: int) -> WorklistAlert:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM clinical_alerts a WHERE alert_id = %s",
                          (alert_id,))  # fmt: skip
        row = await cur.fetchone()
    return WorklistAlert.model_validate(row)


async def _act(ctx: Ctx, principal: Principal, alert_id: int, action: Any) -> WorklistAlert:
    async with ctx.connect(principal) as conn:
        try:
            async with conn.transaction():
                await _visible(conn, principal, alert_id)
                await action(conn, datetime.now(UTC))
        except store.TransitionRefused as e:
            status = 409 if e.code is store.RefusalCode.RESOLVED else 422
            raise ApiError(status, e.code.value, str(e)) from e
        log.info("alert %d: action by org %s", alert_id, principal.org_id)
        return await _one(conn, alert_id)


_ACT_ERRORS: Final = error_responses(404, 409, 422)


@router.post("/{alert_id}/acknowledge", summary="Acknowledge (a red alert needs a note)",
             responses=_ACT_ERRORS)  # fmt: skip
async def acknowledge(
    ctx: Ctx, principal: CurrentPrincipal, alert_id: AlertId, body: AckIn
) -> WorklistAlert:
    return await _act(ctx, principal, alert_id, lambda c, at: store.acknowledge(
        c, alert_id, principal.actor, body.note, at))  # fmt: skip


@router.post("/{alert_id}/assign", summary="Assign to a clinician (null: the care team)",
             responses=_ACT_ERRORS)  # fmt: skip
async def assign(
    ctx: Ctx, principal: CurrentPrincipal, alert_id: AlertId, body: AssignIn
) -> WorklistAlert:
    return await _act(ctx, principal, alert_id, lambda c, at: store.assign(
        c, alert_id, principal.actor, body.assignee, at))  # fmt: skip


@router.post("/{alert_id}/snooze", summary="Snooze until a time, with a reason",
             responses=_ACT_ERRORS)  # fmt: skip
async def snooze(
    ctx: Ctx, principal: CurrentPrincipal, alert_id: AlertId, body: SnoozeIn
) -> WorklistAlert:
    return await _act(ctx, principal, alert_id, lambda c, at: store.snooze(
        c, alert_id, actor=principal.actor, until=body.until, reason=body.reason, at=at,
    ))  # fmt: skip


@router.post("/{alert_id}/resolve", summary="Resolve", responses=_ACT_ERRORS)
async def resolve(
    ctx: Ctx, principal: CurrentPrincipal, alert_id: AlertId, body: ResolveIn
) -> WorklistAlert:
    return await _act(ctx, principal, alert_id, lambda c, at: store.resolve(
        c, alert_id, principal.actor, body.note, at))  # fmt: skip


@router.get("/{alert_id}/events", summary="The alert's audit trail (event id order)",
            responses=error_responses(404))  # fmt: skip
async def events(ctx: Ctx, principal: CurrentPrincipal, alert_id: AlertId) -> EventList:
    async with ctx.connect(principal) as conn:
        await _visible(conn, principal, alert_id)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT event_id, alert_id, type, level, actor, note, payload, at "
                "FROM alert_event WHERE alert_id = %s ORDER BY event_id",
                (alert_id,),
            )
            rows = await cur.fetchall()
    return EventList(events=[EventOut.model_validate(r) for r in rows])
