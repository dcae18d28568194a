"""Held records and technical alerts (gateway/ingest/held.py) for the hub's organisation.

A held record is a device record no patient owns (a shared scale's guest, an unmapped device
user, a BLE notification the hub could not queue). It may still be someone's health data, so
only the operators of the organisation that owns the hub see it (a platform operator also sees
hubs no organisation owns), every list is audited, and another organisation's record is
answered 404 like one that does not exist. A record is reviewed by dismissing it with a note; it
is never turned into a reading of a patient here (re-attribution would need the device user
mapped on the hub, which then sends the device's next records as readings).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.audit import AuditEntry, RequestId, write_audit
from gateway.api.auth import OperatorPrincipal, Principal
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, error_responses, not_found
from gateway.api.hygiene import SAFE_TEXT

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", responses=error_responses(400, 401, 403, 413, 414, 503))

_NO_NUL: Final = r"^[^\x00]*$"
_Text = Annotated[str, Field(max_length=2000, pattern=_NO_NUL)]
HeldKey = Annotated[str, Path(min_length=1, max_length=128, pattern=SAFE_TEXT)]
TechnicalId = Annotated[int, Path(ge=1, le=2**63 - 1)]

#: the hub belongs to the caller's organisation (or, for a platform operator, to none)
_HUB_VISIBLE: Final = (
    "(EXISTS (SELECT 1 FROM hubs h WHERE h.hub_id = {t}.hub_id AND h.org_id = %(org)s) OR "
    "(%(platform)s AND NOT EXISTS (SELECT 1 FROM hubs h WHERE h.hub_id = {t}.hub_id "
    "AND h.org_id IS NOT NULL)))"
)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeldValueOut(_Out):
    mdc: int
    value: str | None
    unit: str
    special: str | None


class HeldRecordOut(_Out):
    key: str
    hub_id: str
    device_id: str
    source: str = Field(description="Decoder key, or the characteristic UUID (undecoded).")
    reason: Literal["unknown-user", "unmapped-user", "queue-overflow"]
    user_id: int | None = Field(description="The device's user index (255: unknown user).")
    received_at: datetime
    stored_at: datetime
    values: list[HeldValueOut]
    raw_hex: str = Field(description="The record's exact bytes.")
    dismissed_at: datetime | None
    dismissed_by: str | None
    dismiss_note: str | None


class HeldRecordList(_Out):
    held_records: list[HeldRecordOut] = Field(description="Newest first.")
    next_before: datetime | None = Field(description="Pass as before for the next page.")


class TechnicalAlertOut(_Out):
    alert_id: int
    hub_id: str
    kind: Literal["held-records", "ble-overflow", "hub-silent"]
    count: int = Field(description="Records counted into this alert.")
    first_at: datetime
    last_at: datetime
    state: Literal["open", "acknowledged", "resolved"]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class TechnicalAlertList(_Out):
    technical_alerts: list[TechnicalAlertOut]


class NoteIn(_In):
    note: _Text | None = None


class DismissIn(_In):
    note: Annotated[str, Field(min_length=1, max_length=2000, pattern=_NO_NUL)] = Field(
        description="Why the record is dismissed (e.g. 'a guest weighed themselves')."
    )


def _scope(principal: Principal) -> dict[str, Any]:
    return {"org": principal.org_id, "platform": principal.is_platform_operator}


_HELD_COLUMNS: Final = (
    "key, hub_id, device_id, source, reason, user_id, received_at, stored_at, "
    "\"values\", encode(raw, 'hex') AS raw_hex, dismissed_at, dismissed_by, dismiss_note"
)


@router.get(
    "/held-records",
    summary="Device records no patient owns, from the caller's organisation's hubs "
    "(operator role; audited)",
    responses=error_responses(422),
)
async def list_held(
    *,
    ctx: Ctx,
    operator: OperatorPrincipal,
    rid: RequestId,
    hub_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=SAFE_TEXT)] = None,
    state: Literal["pending", "dismissed", "all"] = "pending",
    before: Annotated[datetime | None, Query(description="Page: stored before this.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HeldRecordList:
    where = [_HUB_VISIBLE.format(t="r")]
    params = _scope(operator) | {"limit": limit}
    if state != "all":
        where.append(f"r.dismissed_at IS {'NULL' if state == 'pending' else 'NOT NULL'}")
    if hub_id is not None:
        where.append("r.hub_id = %(hub)s")
        params["hub"] = hub_id
    if before is not None:
        if before.tzinfo is None:
            raise ApiError(422, "invalid_request", "before: must carry a UTC offset")
        where.append("r.stored_at < %(before)s")
        params["before"] = before
    async with ctx.connect(operator) as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_HELD_COLUMNS} FROM held_records r WHERE {' AND '.join(where)} "
                "ORDER BY r.stored_at DESC, r.key LIMIT %(limit)s",
                params,
            )
            rows = await cur.fetchall()
        await write_audit(
            conn,
            AuditEntry(rid, operator, None, "held-records", hub_id, row_count=len(rows)),
        )
    items = [HeldRecordOut.model_validate(r) for r in rows]
    return HeldRecordList(
        held_records=items, next_before=items[-1].stored_at if len(items) == limit else None
    )


@router.post(
    "/held-records/{key}/dismiss",
    summary="Mark a held record as reviewed (operator role)",
    responses=error_responses(404, 409, 422),
)
async def dismiss_held(
    ctx: Ctx, operator: OperatorPrincipal, rid: RequestId, key: HeldKey, body: DismissIn
) -> HeldRecordOut:
    async with ctx.connect(operator) as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT dismissed_at FROM held_records r WHERE r.key = %(key)s "
                f"AND {_HUB_VISIBLE.format(t='r')} FOR UPDATE",
                _scope(operator) | {"key": key},
            )
            row = await cur.fetchone()
            if row is None:
                raise not_found("held record")
            if row["dismissed_at"] is not None:
                raise ApiError(409, "conflict", "held record: already dismissed")
            await cur.execute(
                "UPDATE held_records SET dismissed_at = %s, dismissed_by = %s, "
                f"dismiss_note = %s WHERE key = %s RETURNING {_HELD_COLUMNS}",
                (datetime.now(UTC), operator.actor, body.note, key),
            )
            updated = await cur.fetchone()
        await write_audit(conn, AuditEntry(rid, operator, None, "held-record-dismiss", key))
    log.info("held record dismissed by org %s", operator.org_id)
    return HeldRecordOut.model_validate(updated)


_TECH_COLUMNS: Final = (
    "alert_id, hub_id, kind, count, first_at, last_at, state, acknowledged_at, acknowledged_by, "
    "resolved_at, resolved_by, note"
)


@router.get(
    "/technical-alerts",
    summary="Technical alerts of the caller's organisation's hubs (operator role)",
    responses=error_responses(422),
)
async def list_technical(
    ctx: Ctx,
    operator: OperatorPrincipal,
    state: Literal["live", "resolved", "all"] = "live",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TechnicalAlertList:
    where = [_HUB_VISIBLE.format(t="t")]
    if state == "live":
        where.append("t.state <> 'resolved'")
    elif state == "resolved":
        where.append("t.state = 'resolved'")
    async with ctx.connect(operator) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_TECH_COLUMNS} FROM technical_alerts t WHERE {' AND '.join(where)} "
            "ORDER BY t.last_at DESC, t.alert_id DESC LIMIT %(limit)s",
            _scope(operator) | {"limit": limit},
        )
        rows = await cur.fetchall()
    return TechnicalAlertList(technical_alerts=[TechnicalAlertOut.model_validate(r) for r in rows])


async def _transition(
    ctx: Ctx,
    operator: Principal,
    alert_id: int,
    to: Literal["acknowledged", "resolved"],
    note: str | None,
) -> TechnicalAlertOut:
    async with (
        ctx.connect(operator) as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"SELECT state FROM technical_alerts t WHERE t.alert_id = %(id)s "
            f"AND {_HUB_VISIBLE.format(t='t')} FOR UPDATE",
            _scope(operator) | {"id": alert_id},
        )
        row = await cur.fetchone()
        if row is None:
            raise not_found("technical alert")
        if row["state"] == "resolved":
            raise ApiError(409, "conflict", "technical alert: already resolved")
        if to == "acknowledged" and row["state"] == "acknowledged":
            raise ApiError(409, "conflict", "technical alert: already acknowledged")
        prefix = "acknowledged" if to == "acknowledged" else "resolved"
        await cur.execute(
            f"UPDATE technical_alerts SET state = %s, {prefix}_at = %s, {prefix}_by = %s, "
            f"note = coalesce(%s, note) WHERE alert_id = %s RETURNING {_TECH_COLUMNS}",
            (to, datetime.now(UTC), operator.actor, note, alert_id),
        )
        updated = await cur.fetchone()
    log.info("technical alert %d %s by org %s", alert_id, to, operator.org_id)
    return TechnicalAlertOut.model_validate(updated)


@router.post(
    "/technical-alerts/{alert_id}/acknowledge",
    summary="Acknowledge a technical alert (operator role)",
    responses=error_responses(404, 409, 422),
)
async def acknowledge_technical(
    ctx: Ctx, operator: OperatorPrincipal, alert_id: TechnicalId, body: NoteIn
) -> TechnicalAlertOut:
    return await _transition(ctx, operator, alert_id, "acknowledged", body.note)


@router.post(
    "/technical-alerts/{alert_id}/resolve",
    summary="Resolve a technical alert; the hub's next such record raises a new one "
    "(operator role)",
    responses=error_responses(404, 409, 422),
)
async def resolve_technical(
    ctx: Ctx, operator: OperatorPrincipal, alert_id: TechnicalId, body: NoteIn
) -> TechnicalAlertOut:
    return await _transition(ctx, operator, alert_id, "resolved", body.note)
