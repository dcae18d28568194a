"""What the request handlers share: the pool, the live-stream broadcaster, ingester stats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, cast

import psycopg
from fastapi import Depends, Request
from psycopg.rows import TupleRow

from gateway.api.oidc import OidcVerifier
from gateway.db.context import Caller, enter_org
from gateway.notify.events import EventFeed
from gateway.notify.pool import Pool
from gateway.notify.stream import AlertBroadcaster

StatValue = int | float | str | bool | None
#: Returns the in-process ingester's counters for /health (e.g. ``lambda: asdict(stats)``).
IngesterStats = Callable[[], Mapping[str, StatValue]]


@dataclass(slots=True)
class ApiContext:
    dsn: str  # the workers' role (the live stream's LISTEN and fan-out)
    pool: Pool  # the API role's: check out through connect()
    system_pool: Pool  # the workers' role, system context "api-stream"
    broadcaster: AlertBroadcaster
    ingester_stats: IngesterStats | None
    heartbeat: float  # seconds between SSE keep-alive comments
    stuck_grace: float  # seconds a closed SSE stream may take to drain before it is cut
    query_timeout: float
    acquire_timeout: float
    max_range: timedelta = timedelta(days=93)  # longest readings time range
    oidc: OidcVerifier | None = None  # clinicians' bearer JWTs (None: API tokens only)
    stream_running: bool = False
    events: EventFeed = field(default_factory=EventFeed)  # wakes /api/v1/worklist/stream

    @asynccontextmanager
    async def connect(
        self, caller: Caller | None, *, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """One transaction of the API role in ``caller``'s organisation context (committed at
        the end of the block, rolled back on an exception). ``None``: no context, for
        statements that touch no tenant data (a policy refuses them loudly otherwise)."""
        async with self.pool.connection(timeout=timeout) as conn:
            if caller is not None:
                await enter_org(conn, caller)
            yield conn

    def close_streams(self, reason: str = "shutdown") -> None:
        """End every live stream (call before stopping the server: it waits for responses)."""
        self.broadcaster.close_all(reason)
        self.events.close()


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.telehub)


Ctx = Annotated[ApiContext, Depends(get_context)]
