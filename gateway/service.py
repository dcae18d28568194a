"""The gateway in one process: the MQTT ingester, the HTTP API (uvicorn) and the webhook worker,
sharing one asyncio loop, started and stopped together.

``run_gateway(settings, stop=stop)`` returns after ``stop`` is set and every part has shut down:
live streams are closed first (uvicorn waits for open responses), then the server stops
accepting, the webhook worker finishes its round and the ingester drains. If any part fails, the
others are stopped the same way and the failure is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine, Generator
from typing import Any, Final

import uvicorn

from gateway.api import create_app
from gateway.fhir.push import FhirPushWorker, PushOptions
from gateway.ingest import Ingester, OnStored
from gateway.notify.adherence import AdherenceWatch
from gateway.notify.delivery import DeliveryWorker, SmtpSettings
from gateway.notify.escalation import EscalationWatch
from gateway.notify.hub_silence import HubSilenceWatch
from gateway.notify.stream import AlertCallback
from gateway.notify.webhook import WebhookOptions, WebhookWorker
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: Seconds each part gets to stop after ``stop`` is set before it is cancelled.
SHUTDOWN_TIMEOUT: Final = 15.0


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the embedding program owns SIGINT/SIGTERM (and
    sets ``should_exit``). uvicorn's own handlers would also re-raise the signal afterwards."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def serve_or_raise(self, sockets: list[socket.socket] | None = None) -> None:
        """``serve()``, but a start-up failure (port in use, lifespan error) raises RuntimeError
        instead of SystemExit (which would escape the event loop)."""
        try:
            await self.serve(sockets=sockets)
        except SystemExit as exc:
            raise RuntimeError(f"the API server failed to start (exit {exc.code})") from None


def api_server(
    app: Any, *, host: str = "127.0.0.1", port: int = 8080, graceful_timeout: float = 10.0
) -> EmbeddedServer:
    """An :class:`EmbeddedServer` for an ASGI app (no access log: paths carry patient ids)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(graceful_timeout),
        server_header=False,
    )
    return EmbeddedServer(config)


def smtp_settings(settings: GatewaySettings) -> SmtpSettings | None:
    if settings.smtp_host is None:
        return None
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        start_tls=settings.smtp_start_tls,
        username=settings.smtp_username,
        password=settings.smtp_password,
        worklist_url=settings.worklist_url,
    )


async def run_gateway(
    settings: GatewaySettings,
    *,
    stop: asyncio.Event | None = None,
    on_stored: OnStored | None = None,
    on_alert: AlertCallback | None = None,
    webhook: WebhookOptions | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Run ingester + API + webhook worker until ``stop`` is set (or one of them fails).

    ``on_stored`` is passed to the ingester (called after each committed batch); ``on_alert`` is
    called for every alert event of the live stream (new alerts, further occurrences,
    acknowledgements), once per event, whether or not a client is connected. ``webhook``: the
    worker's retry/backoff options. ``sockets``: already-bound listening sockets for the API
    (e.g. port 0 in tests) instead of ``settings.api_host``/``api_port``. The ingester applies
    the database migrations when it connects (``Ingester(migrate_schema=True)``).
    """
    stop = stop or asyncio.Event()
    inner_stop = asyncio.Event()  # set on ``stop`` or when a part fails
    ingester = Ingester(settings, on_stored=on_stored)
    app = create_app(settings, ingester_stats=ingester.health, on_alert=on_alert)
    server = api_server(app, host=settings.api_host, port=settings.api_port)
    worker = WebhookWorker(settings.database_url, options=webhook)

    parts: dict[str, Coroutine[Any, Any, object]] = {
        "ingester": ingester.run(inner_stop),
        "api": server.serve_or_raise(sockets=sockets),
        "webhooks": worker.run(inner_stop),
        "deliveries": DeliveryWorker(settings.database_url, smtp=smtp_settings(settings)).run(
            inner_stop
        ),
    }
    parts["hub-silence"] = HubSilenceWatch(
        settings.database_url, silent_after=settings.hub_silent_after
    ).run(inner_stop)
    parts["escalation"] = EscalationWatch(settings.database_url).run(inner_stop)
    parts["adherence"] = AdherenceWatch(
        settings.database_url, silent_after=settings.hub_silent_after
    ).run(inner_stop)
    if settings.fhir_push_url:
        push = FhirPushWorker(
            settings.database_url,
            PushOptions(
                url=settings.fhir_push_url,
                token=settings.fhir_push_token,
                interval=settings.fhir_push_interval,
            ),
        )
        parts["fhir-push"] = push.run(inner_stop)
    tasks = {
        asyncio.create_task(coro, name=f"gateway-{name}"): name for name, coro in parts.items()
    }
    stop_waiter = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    try:
        done, _ = await asyncio.wait([*tasks, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is stop_waiter:
                continue
            if t.cancelled():
                failure = failure or RuntimeError(f"gateway {tasks[t]} was cancelled")
            elif t.exception() is not None:
                failure = failure or t.exception()
                log.error("gateway %s failed: %s", tasks[t], type(t.exception()).__name__)
            else:
                failure = failure or RuntimeError(f"gateway {tasks[t]} stopped unexpectedly")
        log.info("gateway stopping")
    finally:
        stop_waiter.cancel()
        inner_stop.set()
        app.state.telehub.close_streams("shutdown")
        server.should_exit = True
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT)
            for t in late:
                log.warning(
                    "gateway %s did not stop in %.0fs; cancelling", tasks[t], SHUTDOWN_TIMEOUT
                )
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(stop_waiter, return_exceptions=True)
    if failure is None:
        for t, name in tasks.items():
            if not t.cancelled() and t.exception() is not None:
                failure = t.exception()
                log.error("gateway %s failed while stopping: %s", name, type(failure).__name__)
                break
    if failure is not None:
        raise failure
    log.info("gateway stopped")
