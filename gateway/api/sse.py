"""``GET /api/v1/alerts/stream``: alerts as server-sent events.

Stream format (``text/event-stream``)::

    retry: 5000

    event: ready
    data: {"org_id": "rh", "heartbeat": 15.0}

    id: 42-1-o
    event: alert
    data: {"alert_id": 42, "patient_id": "p-001", ..., "occurrences": 1, "status": "open"}

    : keepalive

    event: close
    data: {"reason": "slow_consumer"}

``alert`` events carry the alert as ``GET /api/v1/alerts`` shows it, for new alerts, further
occurrences and acknowledgements alike (clients upsert by ``alert_id``). The ``id`` changes
whenever the alert does. A comment line is sent every ``heartbeat`` seconds. Clients that do not
keep up (their bounded queue fills) get ``close`` with reason ``slow_consumer`` and are
disconnected; on server shutdown the reason is ``shutdown``. After (re)connecting, ``ready``
signals that the stream is live: fetch ``GET /api/v1/alerts`` then, to fill any gap.

Browsers: ``EventSource`` cannot send an ``Authorization`` header; use ``fetch`` and read the
body stream (as ``gateway/web/index.html`` does).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final

from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api.auth import CurrentPrincipal
from gateway.api.context import Ctx
from gateway.api.errors import error_responses
from gateway.notify.alerts import AlertEvent
from gateway.notify.stream import AlertBroadcaster, StreamClosed, Subscription
from gateway.notify.tasks import cancel_and_wait

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", responses=error_responses(401, 503))

#: Events sent in one write when several are queued.
MAX_EVENTS_PER_WRITE: Final = 64
KEEPALIVE: Final = b": keepalive\n\n"


def format_event(event: AlertEvent) -> bytes:
    data = event.alert.model_dump_json()
    return f"id: {event.event_id}\nevent: alert\ndata: {data}\n\n".encode()


def _control(name: str, payload: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(Response):
    """Streams one :class:`Subscription` until the client leaves or the subscription closes.

    Three tasks race: the pump (queue -> socket), a watcher for ``http.disconnect`` and a watcher
    that cuts a closed stream whose client has not drained it within ``stuck_grace`` seconds
    (a client that stopped reading leaves the pump blocked in ``send``).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        sub: Subscription,
        broadcaster: AlertBroadcaster,
        *,
        heartbeat: float,
        stuck_grace: float,
    ) -> None:
        self.sub = sub
        self.broadcaster = broadcaster
        self.heartbeat = heartbeat
        self.stuck_grace = stuck_grace
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            tasks = [
                asyncio.create_task(self._pump(send)),
                asyncio.create_task(self._until_disconnect(receive)),
                asyncio.create_task(self._until_stuck()),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.broadcaster.unsubscribe(self.sub)
            await cancel_and_wait(*tasks)
        for t in tasks:
            exc = None if t.cancelled() else t.exception()
            # a failed send means the client is gone; anything else is a bug worth raising
            if exc is not None and not isinstance(exc, OSError):
                raise exc

    async def _pump(self, send: Send) -> None:
        # "ready" promises a live stream: wait for the broadcaster's LISTEN (keeping the
        # connection alive meanwhile, e.g. while the database is unreachable)
        while not self.broadcaster.listening.is_set():
            try:
                async with asyncio.timeout(self.heartbeat):
                    await self.broadcaster.listening.wait()
            except TimeoutError:
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
        hello = b"retry: 5000\n\n" + _control(
            "ready", {"org_id": self.sub.org_id, "heartbeat": self.heartbeat}
        )
        await send({"type": "http.response.body", "body": hello, "more_body": True})
        while True:
            item = await self.sub.next(self.heartbeat)
            if item is None:
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                continue
            chunks: list[bytes] = []
            while True:
                if isinstance(item, StreamClosed):
                    chunks.append(_control("close", {"reason": item.reason}))
                    await send(
                        {"type": "http.response.body", "body": b"".join(chunks), "more_body": False}
                    )
                    return
                chunks.append(format_event(item))
                if len(chunks) >= MAX_EVENTS_PER_WRITE or self.sub.queue.empty():
                    break
                item = self.sub.queue.get_nowait()
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    async def _until_stuck(self) -> None:
        await self.sub.closed.wait()
        await asyncio.sleep(self.stuck_grace)
        log.warning("live stream of org %s cut: client stopped reading", self.sub.org_id)


@router.get(
    "/alerts/stream",
    summary="Live alerts of the caller's organisation (server-sent events)",
    response_class=EventStreamResponse,
    status_code=200,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "An endless text/event-stream (see module docs).",
        }
    },
)
async def alert_stream(ctx: Ctx, principal: CurrentPrincipal) -> Response:
    sub = ctx.broadcaster.subscribe(principal.org_id)
    log.info("live stream opened for org %s", principal.org_id)
    return EventStreamResponse(
        sub, ctx.broadcaster, heartbeat=ctx.heartbeat, stuck_grace=ctx.stuck_grace
    )
