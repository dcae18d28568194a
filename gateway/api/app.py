"""The FastAPI application: ``create_app(settings_or_dsn)``.

Run it with uvicorn (``gateway.service.run_gateway`` does, next to the ingester and the webhook
worker), or alone: ``create_app("postgresql://...")`` is an ASGI app whose lifespan opens the
connection pool and starts the live-stream broadcaster.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from gateway.api import (
    routes_clinical,
    routes_consent,
    routes_held,
    routes_ops,
    routes_series,
    routes_worklist,
    sse,
    sse_events,
)
from gateway.api.context import ApiContext, IngesterStats
from gateway.api.errors import install_error_handlers
from gateway.api.hygiene import InputHygiene
from gateway.api.oidc import OidcConfig, OidcVerifier
from gateway.db.context import role_dsn
from gateway.db.rls import AppRole
from gateway.fhir import api as fhir_api
from gateway.notify.pool import make_pool
from gateway.notify.stream import AlertBroadcaster, AlertCallback
from gateway.notify.tasks import cancel_and_wait
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

API_VERSION = "1"

DESCRIPTION = """
Read-only clinical access to the readings and alerts of the patients an organisation follows,
alert acknowledgement, a live alert stream (server-sent events) and operational views.

**Authentication**: `Authorization: Bearer <token>` (an organisation's API token).
A patient or alert that the caller's organisation does not follow answers 404.

**Errors** all have the shape `{"error": {"code": ..., "message": ..., "details": ...}}`
(codes: unauthorized, forbidden, not_found, method_not_allowed, invalid_request,
database_unavailable, internal_error).

**Numbers**: measured values are decimal strings with the device's precision ("2.00").
"""


def create_app(
    settings_or_dsn: GatewaySettings | str,
    *,
    ingester_stats: IngesterStats | None = None,
    on_alert: AlertCallback | None = None,
    stream_queue_size: int = 256,
    heartbeat: float = 15.0,
    stuck_grace: float = 5.0,
    pool_max_size: int = 10,
    query_timeout: float = 15.0,
    acquire_timeout: float = 5.0,
    docs: bool | None = None,
    oidc: OidcConfig | None = None,
) -> FastAPI:
    """The API as an ASGI app.

    ``ingester_stats``: counters of an ingester running in the same process, shown by /health.
    ``on_alert``: called (synchronously, must not raise) for every alert event the live stream
    publishes — new alerts, further occurrences and acknowledgements.
    ``query_timeout``: server-side statement timeout; ``acquire_timeout``: longest wait for a pooled
    connection (then 503 ``database_unavailable``).
    ``app.state.telehub.close_streams()`` ends all live streams (call it before stopping
    the server: uvicorn waits for open responses).
    ``oidc``: accept clinicians' OIDC bearer JWTs (default: from ``settings.oidc_*``).
    ``docs``: serve /openapi.json, /docs and /redoc (default: ``settings.api_docs``).
    """
    settings = (
        settings_or_dsn
        if isinstance(settings_or_dsn, GatewaySettings)
        else GatewaySettings(database_url=settings_or_dsn)
    )
    api_dsn = role_dsn(settings.database_url, AppRole.API, settings.api_database_url)
    dsn = role_dsn(settings.database_url, AppRole.INGEST, settings.ingest_database_url)
    serve_docs = settings.api_docs if docs is None else docs
    if oidc is None and settings.oidc_issuer and settings.oidc_audience:
        oidc = OidcConfig(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            algorithms=settings.oidc_algorithms,
        )
    ctx = ApiContext(
        dsn=dsn,
        pool=make_pool(
            api_dsn,
            max_size=pool_max_size,
            acquire_timeout=acquire_timeout,
            statement_timeout_ms=int(query_timeout * 1000),
            name="telehub-api",
            scoped=True,
        ),
        system_pool=make_pool(
            dsn,
            max_size=2,
            acquire_timeout=acquire_timeout,
            statement_timeout_ms=int(query_timeout * 1000),
            name="api-stream",
        ),
        broadcaster=AlertBroadcaster(queue_size=stream_queue_size, on_alert=on_alert),
        ingester_stats=ingester_stats,
        heartbeat=heartbeat,
        stuck_grace=stuck_grace,
        query_timeout=query_timeout,
        acquire_timeout=acquire_timeout,
        max_range=settings.api_max_range,
        oidc=OidcVerifier(oidc) if oidc is not None else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await ctx.pool.open(wait=False)
        await ctx.system_pool.open(wait=False)
        task = asyncio.create_task(
            ctx.broadcaster.run(ctx.dsn, ctx.system_pool, query_timeout=query_timeout),
            name="alert-broadcaster",
        )
        ctx.stream_running = True

        def on_done(t: asyncio.Task[object]) -> None:
            ctx.stream_running = False
            if not t.cancelled() and t.exception() is not None:
                # a bug: the stream is down; /health reports stream.running = false
                log.error("alert broadcaster stopped", exc_info=t.exception())

        task.add_done_callback(on_done)
        feed = asyncio.create_task(ctx.events.run(ctx.dsn), name="alert-event-feed")
        try:
            yield
        finally:
            ctx.close_streams("shutdown")
            await cancel_and_wait(task, feed)
            await ctx.pool.close()
            await ctx.system_pool.close()

    app = FastAPI(
        title="telehub gateway API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json" if serve_docs else None,
        docs_url="/docs" if serve_docs else None,
        redoc_url="/redoc" if serve_docs else None,
    )
    app.add_middleware(
        InputHygiene,
        max_body_bytes=settings.api_max_body_bytes,
        max_url_bytes=settings.api_max_url_bytes,
    )
    app.state.telehub = ctx
    install_error_handlers(app)
    app.include_router(routes_ops.health_router)
    app.include_router(routes_clinical.router)
    app.include_router(sse_events.router)  # before /worklist/{alert_id} could shadow it
    app.include_router(routes_worklist.router)
    app.include_router(sse.router)  # before any /alerts/{id} route could shadow it
    app.include_router(routes_ops.router)
    app.include_router(routes_held.router)
    app.include_router(routes_consent.router)
    app.include_router(routes_series.router)
    fhir_api.install(app)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        html, csp = web_page()
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    return app


@cache
def web_page() -> tuple[str, str]:
    """The clinician page and a Content-Security-Policy that allows only its own inline script
    and style (by hash), and requests to this origin."""
    html = resources.files("gateway.web").joinpath("index.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in found
        )

    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, csp
