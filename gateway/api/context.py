"""What the request handlers share: the pool, the live-stream broadcaster, ingester stats."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, cast

from fastapi import Depends, Request

from gateway.api.oidc import OidcVerifier
from gateway.notify.events import EventFeed
from gateway.notify.pool import Pool
from gateway.notify.stream import AlertBroadcaster

StatValue = int | float | str | bool | None
#: Returns the in-process ingester's counters for /health (e.g. ``lambda: asdict(stats)``).
IngesterStats = Callable[[], Mapping[str, StatValue]]


@dataclass(slots=True)
class ApiContext:
    dsn: str
    pool: Pool
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

    def close_streams(self, reason: str = "shutdown") -> None:
        """End every live stream (call before stopping the server: it waits for responses)."""
        self.broadcaster.close_all(reason)
        self.events.close()


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.telehub)


Ctx = Annotated[ApiContext, Depends(get_context)]
