"""The durable webhook worker: delivers alerts to each organisation's webhooks.

The ingester writes one ``alert_deliveries`` row per (alert, webhook of an organisation following
the patient) in the transaction that raises the alert, then NOTIFYs ``telehub_alerts``. This worker
wakes on that notification (and polls every ``poll_interval`` seconds as a fallback), claims due
rows with ``FOR UPDATE SKIP LOCKED`` (several workers may run), and POSTs the alert:

* body: :class:`WebhookPayload` as JSON (the alert as the API shows it, values as decimal text);
* ``X-Telehub-Signature: sha256=<hex HMAC-SHA256 of the exact body, keyed with the webhook's
  secret>`` (omitted when the webhook has no secret);
* ``X-Telehub-Delivery: <alert_id>.<webhook_id>`` (stable across retries: receivers deduplicate
  on it) and ``X-Telehub-Attempt: <n>`` (1-based).

A 2xx response marks the row delivered. Anything else (non-2xx, timeout, connection error)
increments ``attempts``, records ``last_error`` and schedules the next attempt after an exponential
backoff (``backoff_base * 2**(attempts-1)``, capped at ``backoff_cap``). After ``max_attempts``
the row is left failed for good: ``delivered_at`` NULL and ``next_attempt_at`` set to
:data:`FAILED_SENTINEL` (9999-01-01, beyond any due time, but loadable as a datetime, unlike
'infinity'); listed by ``GET /api/v1/webhook-deliveries?status=failed``. To retry such a row, set
its ``next_attempt_at = now()`` and ``attempts = 0``.

Claiming a row moves its ``next_attempt_at`` a lease ahead (no transaction stays open during the
HTTP request); if the worker dies mid-delivery, the row is due again when the lease expires, so
delivery is at-least-once.

Logs carry alert and webhook ids only, never the alert's content.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import httpx
import psycopg
from pydantic import BaseModel

from gateway.notify.alerts import ALERTS_CHANNEL, AlertView, fetch_alert_events
from gateway.notify.listen import listen_forever
from gateway.notify.pool import Pool, make_pool
from gateway.notify.tasks import cancel_and_wait, wait_any

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Telehub-Signature"
DELIVERY_HEADER: Final = "X-Telehub-Delivery"
ATTEMPT_HEADER: Final = "X-Telehub-Attempt"
USER_AGENT: Final = "telehub-webhook/1"
MAX_ERROR_CHARS: Final = 500
#: ``next_attempt_at`` of a delivery that failed for good.
FAILED_SENTINEL: Final = datetime(9999, 1, 1, tzinfo=UTC)


class WebhookPayload(BaseModel):
    """The JSON body POSTed to a webhook."""

    type: Literal["alert"] = "alert"
    alert: AlertView


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    poll_interval: float = 5.0  # seconds between polls when no notification arrives
    request_timeout: float = 10.0  # per HTTP request (connect, read, write, pool)
    max_attempts: int = 10
    backoff_base: float = 5.0  # delay after the first failed attempt
    backoff_cap: float = 3600.0
    batch_size: int = 20  # rows claimed per round
    concurrency: int = 8  # HTTP requests in flight
    query_timeout: float = 10.0

    @property
    def lease(self) -> float:
        """How long a claimed row stays invisible to other workers."""
        return self.request_timeout * 2 + 5.0


def backoff_delay(attempts: int, options: WebhookOptions) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
    return float(min(options.backoff_cap, options.backoff_base * 2 ** max(0, attempts - 1)))


def sign(secret: str, body: bytes) -> str:
    """The ``X-Telehub-Signature`` header value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """For receivers (and tests): does ``header`` sign ``body`` with ``secret``?"""
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True, slots=True)
class _Claim:
    alert_id: int
    webhook_id: int
    attempts: int  # before this attempt
    url: str | None  # None: the webhook was removed
    secret: str | None


@dataclass(slots=True)
class WebhookStats:
    delivered: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    db_errors: int = 0


@dataclass(frozen=True, slots=True)
class RoundResult:
    attempted: int
    next_due_in: float | None  # seconds until the next pending row is due, None if none


_CLAIM_SQL: Final = """
WITH due AS (
    SELECT alert_id, webhook_id FROM alert_deliveries
    WHERE delivered_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE alert_deliveries d
SET next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due
WHERE d.alert_id = due.alert_id AND d.webhook_id = due.webhook_id
RETURNING d.alert_id, d.webhook_id, d.attempts,
    (SELECT w.url FROM webhooks w WHERE w.webhook_id = d.webhook_id),
    (SELECT w.secret FROM webhooks w WHERE w.webhook_id = d.webhook_id)
"""

_NEXT_DUE_SQL: Final = """
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM alert_deliveries
WHERE delivered_at IS NULL AND next_attempt_at < %s
"""


class WebhookWorker:
    """Delivers due ``alert_deliveries`` rows; ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        dsn: str,
        *,
        pool: Pool | None = None,
        options: WebhookOptions | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.dsn = dsn
        self.options = options or WebhookOptions()
        self._pool = pool
        self._client = client
        self.stats = WebhookStats()
        #: set once the worker LISTENs (a notification then wakes it)
        self.listening = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        own_pool = self._pool is None
        pool = self._pool or make_pool(self.dsn, max_size=2, name="telehub-webhooks")
        own_client = self._client is None
        client = self._client or httpx.AsyncClient(
            timeout=self.options.request_timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        if own_pool:
            await pool.open(wait=False)
        wake = asyncio.Event()
        listener = asyncio.create_task(
            listen_forever(
                self.dsn,
                ALERTS_CHANNEL,
                lambda _payload: wake.set(),
                on_connected=self._on_listening,
            ),
            name="webhook-listen",
        )
        log.info("webhook worker started")
        try:
            while not stop.is_set():
                wait = self.options.poll_interval
                try:
                    result = await self.deliver_due(pool, client)
                except (psycopg.Error, TimeoutError) as exc:
                    # the database is unreachable or slow: count it and try again after a poll
                    self.stats.db_errors += 1
                    log.warning("webhook worker: database error (%s)", type(exc).__name__)
                else:
                    if result.attempted >= self.options.batch_size:
                        continue  # more may be due right now
                    if result.next_due_in is not None:
                        wait = min(wait, max(0.0, result.next_due_in))
                await wait_any((wake, stop), wait)
                wake.clear()
        finally:
            await cancel_and_wait(listener)
            if own_client:
                await client.aclose()
            if own_pool:
                await pool.close()
            log.info("webhook worker stopped")

    async def _on_listening(self) -> None:
        self.listening.set()

    async def deliver_due(self, pool: Pool, client: httpx.AsyncClient) -> RoundResult:
        """One round: claim due rows, POST them concurrently, record the outcomes."""
        opts = self.options
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn:
                cur = await conn.execute(
                    _CLAIM_SQL, {"batch": opts.batch_size, "lease": opts.lease}
                )
                claims = [
                    _Claim(int(r[0]), int(r[1]), int(r[2]), r[3], r[4])
                    for r in await cur.fetchall()
                ]
                events = await fetch_alert_events(conn, sorted({c.alert_id for c in claims}))
        alerts = {e.alert.alert_id: e.alert for e in events}
        if claims:
            sem = asyncio.Semaphore(opts.concurrency)

            async def one(claim: _Claim) -> tuple[_Claim, str | None]:
                async with sem:
                    return claim, await self._post(client, claim, alerts.get(claim.alert_id))

            outcomes = await asyncio.gather(*(one(c) for c in claims))
            await self._record(pool, outcomes)
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn:
                row = await (await conn.execute(_NEXT_DUE_SQL, (FAILED_SENTINEL,))).fetchone()
        next_due = None if row is None or row[0] is None else float(row[0])
        return RoundResult(attempted=len(claims), next_due_in=next_due)

    async def _post(
        self, client: httpx.AsyncClient, claim: _Claim, alert: AlertView | None
    ) -> str | None:
        """POST one delivery; returns None on success, else the error to record."""
        if claim.url is None:
            return "webhook removed"
        if alert is None:
            return "alert removed"
        body = WebhookPayload(alert=alert).model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: f"{claim.alert_id}.{claim.webhook_id}",
            ATTEMPT_HEADER: str(claim.attempts + 1),
        }
        if claim.secret:
            headers[SIGNATURE_HEADER] = sign(claim.secret, body)
        try:
            async with asyncio.timeout(self.options.request_timeout + 1):
                response = await client.post(claim.url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            text = str(exc)
            return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[
                :MAX_ERROR_CHARS
            ]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _record(self, pool: Pool, outcomes: list[tuple[_Claim, str | None]]) -> None:
        opts = self.options
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn, conn.transaction():
                for claim, error in outcomes:
                    attempt = claim.attempts + 1
                    if error is None:
                        await conn.execute(
                            """UPDATE alert_deliveries SET delivered_at = now(),
                                   attempts = %s, last_error = NULL
                               WHERE alert_id = %s AND webhook_id = %s""",
                            (attempt, claim.alert_id, claim.webhook_id),
                        )
                        self.stats.delivered += 1
                        log.info(
                            "webhook delivered: alert %d webhook %d attempt %d",
                            claim.alert_id,
                            claim.webhook_id,
                            attempt,
                        )
                        continue
                    permanent = error in ("webhook removed", "alert removed")
                    give_up = permanent or attempt >= opts.max_attempts
                    await conn.execute(
                        """UPDATE alert_deliveries SET attempts = %s, last_error = %s,
                               next_attempt_at = CASE WHEN %s THEN %s
                                   ELSE now() + make_interval(secs => %s) END
                           WHERE alert_id = %s AND webhook_id = %s""",
                        (
                            attempt,
                            error,
                            give_up,
                            FAILED_SENTINEL,
                            backoff_delay(attempt, opts),
                            claim.alert_id,
                            claim.webhook_id,
                        ),
                    )
                    self.stats.failed_attempts += 1
                    if give_up:
                        self.stats.gave_up += 1
                        log.warning(
                            "webhook failed for good: alert %d webhook %d after %d attempts",
                            claim.alert_id,
                            claim.webhook_id,
                            attempt,
                        )
                    else:
                        log.info(
                            "webhook attempt %d failed: alert %d webhook %d",
                            attempt,
                            claim.alert_id,
                            claim.webhook_id,
                        )
