"""Operational endpoints: health, hub presence, dead letters, webhook deliveries."""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import asdict
from typing import Annotated, Final, Literal

import psycopg
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row

from gateway.api.auth import CurrentPrincipal, OperatorPrincipal
from gateway.api.context import Ctx
from gateway.api.errors import error_responses
from gateway.api.hygiene import SAFE_TEXT
from gateway.api.models import (
    DeadLetter,
    DeadLetterList,
    Delivery,
    DeliveryList,
    Health,
    HubList,
    HubOut,
)
from gateway.notify.webhook import FAILED_SENTINEL

log = logging.getLogger(__name__)

HEALTH_DB_TIMEOUT: Final = 2.0

health_router = APIRouter()
router = APIRouter(prefix="/api/v1", responses=error_responses(400, 401, 413, 414, 503))


@health_router.get(
    "/health",
    summary="Liveness and readiness (no authentication)",
    responses={503: {"model": Health, "description": "The database is unreachable"}},
)
async def health(ctx: Ctx) -> JSONResponse:
    database: Literal["ok", "unreachable"] = "ok"
    wait = min(HEALTH_DB_TIMEOUT, ctx.acquire_timeout)
    try:
        async with asyncio.timeout(HEALTH_DB_TIMEOUT), ctx.connect(None, timeout=wait) as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, TimeoutError) as exc:
        log.warning("health: database unreachable (%s)", type(exc).__name__)
        database = "unreachable"
    stream: dict[str, int | bool] = {
        "running": ctx.stream_running,
        "listening": ctx.broadcaster.listening.is_set(),
    }
    stream.update(asdict(ctx.broadcaster.stats()))
    ingester = dict(ctx.ingester_stats()) if ctx.ingester_stats is not None else None
    ok = database == "ok"
    body = Health(
        status="ok" if ok else "unavailable", database=database, stream=stream, ingester=ingester
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get(
    "/hubs",
    summary="Presence of the caller's organisation's hubs",
)
async def list_hubs(ctx: Ctx, principal: CurrentPrincipal) -> HubList:
    """The hubs the caller's organisation owns; a platform operator (an organisation of kind
    ``operator``) also sees the hubs no organisation owns yet. Never another organisation's."""
    async with ctx.connect(principal) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT h.hub_id, h.org_id, h.state, h.last_seen,
                   (h.status->>'at') AS status_at, h.status->'outbox' AS outbox,
                   coalesce((SELECT json_agg(json_build_object(
                                 'device_id', d.device_id, 'model', d.model,
                                 'last_seen', d.last_seen) ORDER BY d.device_id)
                             FROM devices d WHERE d.hub_id = h.hub_id), '[]'::json) AS devices
               FROM hubs h WHERE h.org_id = %s OR (%s AND h.org_id IS NULL)
               ORDER BY h.hub_id""",
            (principal.org_id, principal.is_platform_operator),
        )
        rows = await cur.fetchall()
    return HubList(hubs=[HubOut.model_validate(r) for r in rows])


@router.get(
    "/dead-letters",
    summary="Messages and readings the ingester rejected from the caller's organisation's hubs "
    "(operator role only)",
    responses=error_responses(403, 422),
)
async def list_dead_letters(
    *,
    ctx: Ctx,
    operator: OperatorPrincipal,
    hub_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=SAFE_TEXT)] = None,
    before_id: Annotated[int | None, Query(ge=1, description="Page: ids below this.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    include_payload: Annotated[bool, Query(description="Include the payload (base64).")] = False,
) -> DeadLetterList:
    """Scoped to the hubs of the operator's organisation, so a payload (which carries patient
    data) of another organisation's hub is never visible. A platform operator (organisation kind
    ``operator``) also sees dead letters of hubs no organisation owns (unknown or unassigned)."""
    where = [
        "(EXISTS (SELECT 1 FROM hubs h WHERE h.hub_id = dl.hub_id AND h.org_id = %s) OR "
        "(%s AND telehub_hub_owner(dl.hub_id) IS NULL))"
    ]
    params: list[object] = [operator.org_id, operator.is_platform_operator]
    if hub_id is not None:
        where.append("dl.hub_id = %s")
        params.append(hub_id)
    if before_id is not None:
        where.append("dl.id < %s")
        params.append(before_id)
    params.append(limit)
    async with ctx.connect(operator) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT dl.id, dl.received_at, dl.hub_id, dl.topic, dl.reading_key, dl.reason,
                    octet_length(dl.payload) AS payload_size,
                    CASE WHEN {"TRUE" if include_payload else "FALSE"} THEN dl.payload END
                        AS payload
                FROM dead_letters dl WHERE {" AND ".join(where)}
                ORDER BY dl.id DESC LIMIT %s""",
            params,
        )
        rows = await cur.fetchall()
    items = []
    for r in rows:
        payload = r.pop("payload")
        r["payload_base64"] = base64.b64encode(payload).decode() if payload is not None else None
        items.append(DeadLetter.model_validate(r))
    next_before = items[-1].id if len(items) == limit else None
    return DeadLetterList(dead_letters=items, next_before_id=next_before)


@router.get(
    "/webhook-deliveries",
    summary="Webhook deliveries of the caller's organisation",
    responses=error_responses(422),
)
async def list_deliveries(
    ctx: Ctx,
    principal: CurrentPrincipal,
    status: Literal["pending", "delivered", "failed", "all"] = "failed",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """``failed``: gave up after the worker's maximum number of attempts (the row is kept);
    ``pending``: not yet delivered and still being retried."""
    status_sql = {
        "pending": "d.delivered_at IS NULL AND d.next_attempt_at < %(failed)s",
        "delivered": "d.delivered_at IS NOT NULL",
        "failed": "d.delivered_at IS NULL AND d.next_attempt_at >= %(failed)s",
        "all": "TRUE",
    }[status]
    async with ctx.connect(principal) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT d.alert_id, d.webhook_id, w.org_id, w.url, d.attempts,
                    CASE WHEN d.delivered_at IS NOT NULL THEN 'delivered'
                         WHEN d.next_attempt_at >= %(failed)s THEN 'failed'
                         ELSE 'pending' END AS status,
                    CASE WHEN d.delivered_at IS NULL AND d.next_attempt_at < %(failed)s
                         THEN d.next_attempt_at END AS next_attempt_at,
                    d.delivered_at, d.last_error
                FROM alert_deliveries d JOIN webhooks w USING (webhook_id)
                WHERE ({status_sql}) AND w.org_id = %(org)s
                ORDER BY d.alert_id DESC, d.webhook_id LIMIT %(limit)s""",
            {
                "failed": FAILED_SENTINEL,
                "org": principal.org_id,
                "limit": limit,
            },
        )
        rows = await cur.fetchall()
    return DeliveryList(deliveries=[Delivery.model_validate(r) for r in rows])
