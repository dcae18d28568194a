"""``GET /api/v1/worklist/stream``: the caller's organisation's alert events, server-sent.

    retry: 5000

    event: ready
    data: {"org_id": "rh", "after": 41}

    id: 42
    event: alert-event
    data: {"event_id": 42, "alert_id": 7, "type": "created", "level": "red", "state": "open", ...}

    : keepalive

``id`` is the ``alert_event`` sequence number. A client that reconnects sends ``Last-Event-ID``
(``EventSource`` does it by itself; ``?after=`` does the same) and gets every event after it,
replayed from the database, before the live ones: no gaps. Without either it starts at the
newest event. Events of patients the organisation does not follow are never sent. Each page of
events read is audited (one row per patient, resource ``worklist-stream``), in the read's
transaction, like every other read of patient data.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse

from gateway.api.audit import AuditEntry, RequestId, write_audits
from gateway.api.auth import CurrentPrincipal, Principal
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import error_responses
from gateway.notify.events import Cursor, FeedEvent, latest_event_id, read

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/worklist", responses=error_responses(400, 401, 503))

KEEPALIVE: Final = b": keepalive\n\n"
RESOURCE: Final = "worklist-stream"


def _frame(e: FeedEvent) -> bytes:
    data = json.dumps(e.data, separators=(",", ":"), default=str)
    return f"id: {e.event_id}\nevent: alert-event\ndata: {data}\n\n".encode()


async def _page(
    ctx: ApiContext, principal: Principal, request_id: str, cursor: Cursor
) -> tuple[list[FeedEvent], bool]:
    async with (
        asyncio.timeout(ctx.query_timeout),
        ctx.connect(principal) as conn,
        conn.transaction(),
    ):
        events, more = await read(conn, principal.org_id, cursor)
        per_patient = Counter(e.patient_id for e in events)
        await write_audits(
            conn,
            [
                AuditEntry(request_id, principal, pid, RESOURCE, row_count=n)
                for pid, n in sorted(per_patient.items())
            ],
        )
    return events, more


async def _stream(
    ctx: ApiContext, principal: Principal, request_id: str, after: int | None
) -> AsyncIterator[bytes]:
    feed = ctx.events
    wake = feed.waiter()
    try:
        if after is None:
            async with asyncio.timeout(ctx.query_timeout), ctx.connect(principal) as conn:
                after = await latest_event_id(conn)
        cursor = Cursor(after)
        ready = {"org_id": principal.org_id, "after": after}
        yield b"retry: 5000\n\nevent: ready\ndata: " + json.dumps(ready).encode() + b"\n\n"
        while not feed.closed:
            wake.clear()
            events, more = await _page(ctx, principal, request_id, cursor)
            if events:
                yield b"".join(_frame(e) for e in events)
            if more:
                continue
            try:
                # a gap may fill in without a notification reaching us: look again soon
                timeout = 1.0 if cursor.missing else ctx.heartbeat
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                if not cursor.missing:
                    yield KEEPALIVE
        yield b'event: close\ndata: {"reason": "shutdown"}\n\n'
    finally:
        feed.release(wake)


@router.get(
    "/stream",
    summary="The organisation's alert events, live, resumable with Last-Event-ID (SSE)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "See module docs."}},
)
async def worklist_stream(
    ctx: Ctx,
    principal: CurrentPrincipal,
    request_id: RequestId,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**62)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> StreamingResponse:
    start = last_event_id if last_event_id is not None else after
    log.info("worklist stream opened for org %s", principal.org_id)
    return StreamingResponse(
        _stream(ctx, principal, request_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
    )
