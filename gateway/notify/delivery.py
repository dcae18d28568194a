"""Delivery of clinical alert events: webhooks (Standard Webhooks) and e-mail, durable and retried.

The engine appends to ``alert_event``; a trigger (migration 90) inserts one ``event_deliveries``
row per notifiable event and target in the same transaction and NOTIFYs ``telehub_deliveries``.
Notifiable: events whose ``payload.notify`` is true (new open alert, confirmation, severity
increase — never late findings, suppression windows or pending alerts), and ``resolved`` /
``escalated`` of an alert that was notified before. Targets: every enabled webhook of every
organisation following the patient; an organisation with no enabled webhook gets e-mail to its
``email_recipients`` instead.

:class:`DeliveryWorker` claims due rows with ``FOR UPDATE SKIP LOCKED`` and a lease (several
workers, or several gateways, may run), and for each one, *before sending*:

* re-checks that the organisation still follows the patient (``patient_access``): if not, the
  row is cancelled ("no care relation or consent gives access": the relation ended, or the
  patient refused the organisation or withdrew the consent it rested on) and nothing is sent;
* a disabled webhook cancels the row ("endpoint disabled") and falls back to e-mail.

Webhooks: ``POST`` of :func:`event_body` with the Standard Webhooks headers
(:mod:`gateway.notify.standard_webhooks`); ``webhook-id`` is ``evt_<event id>`` on every attempt,
so receivers deduplicate. 2xx: delivered. **410 Gone** disables the endpoint (``disabled_at``),
cancels its other pending rows and sends those events by e-mail. Anything else is retried with
exponential backoff; after ``email_after`` failed attempts the organisation is also e-mailed
(once per event), and after ``max_attempts`` the row is failed for good.

E-mail (``aiosmtplib``): a short message naming the level, the alert and the event — no values,
no names, so nothing clinical crosses a mail server; the clinician opens the worklist.

Logs carry delivery, event and webhook ids, never health data.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC
from email.message import EmailMessage
from typing import Any, Final

import aiosmtplib
import httpx
import psycopg
from psycopg.rows import dict_row

from gateway.notify import standard_webhooks
from gateway.notify.listen import listen_forever
from gateway.notify.pool import Pool, make_pool
from gateway.notify.tasks import cancel_and_wait, wait_any
from gateway.notify.webhook import FAILED_SENTINEL, USER_AGENT

log = logging.getLogger(__name__)

CHANNEL: Final = "telehub_deliveries"
MAX_ERROR_CHARS: Final = 500


class Channel(enum.StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class Cancel(enum.StrEnum):
    """Why a delivery was cancelled rather than sent."""

    CARE_RELATION_ENDED = "no care relation or consent gives access"
    ENDPOINT_DISABLED = "endpoint disabled"
    TARGET_REMOVED = "target removed"


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "telehub@localhost"
    start_tls: bool = False
    username: str | None = None
    password: str | None = None
    #: the worklist URL put in the message (None: no link)
    worklist_url: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    poll_interval: float = 5.0
    request_timeout: float = 10.0
    max_attempts: int = 10
    email_after: int = 3  # failed webhook attempts before the organisation is e-mailed too
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    batch_size: int = 20
    concurrency: int = 8
    query_timeout: float = 10.0

    @property
    def lease(self) -> float:
        return self.request_timeout * 2 + 5.0

    def backoff(self, attempts: int) -> float:
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_id: int
    event_id: int
    org_id: str
    channel: Channel
    target_id: int
    attempts: int
    followed: bool  # the organisation still follows the patient
    url: str | None
    secret: str | None
    disabled: bool
    address: str | None


class _Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # HTTP 410: disable the endpoint
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class _Result:
    claim: _Claim
    outcome: _Outcome
    error: str | None = None


@dataclass(slots=True)
class DeliveryStats:
    delivered: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    cancelled: int = 0
    disabled_endpoints: int = 0
    db_errors: int = 0


_CLAIM_SQL: Final = """
WITH due AS (
    SELECT delivery_id FROM event_deliveries
    WHERE delivered_at IS NULL AND cancelled_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE event_deliveries d
SET next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due
WHERE d.delivery_id = due.delivery_id
RETURNING d.delivery_id, d.event_id, d.org_id, d.channel, d.target_id, d.attempts,
    EXISTS (SELECT 1 FROM patient_access pa
            WHERE pa.patient_id = d.patient_id AND pa.org_id = d.org_id) AS followed,
    (SELECT w.url FROM webhooks w WHERE d.channel = 'webhook' AND w.webhook_id = d.target_id),
    (SELECT w.secret FROM webhooks w WHERE d.channel = 'webhook' AND w.webhook_id = d.target_id),
    coalesce((SELECT w.disabled_at IS NOT NULL FROM webhooks w
              WHERE d.channel = 'webhook' AND w.webhook_id = d.target_id), false),
    (SELECT r.address FROM email_recipients r
     WHERE d.channel = 'email' AND r.recipient_id = d.target_id)
"""

_EVENTS_SQL: Final = """
SELECT e.event_id, e.type, e.level AS event_level, e.actor, e.at, e.payload,
       a.alert_id, a.patient_id, a.rule_code, a.rule_version, a.level, a.state, a.late,
       a.value::text AS value, a.unit, a.message, a.occurrences, a.effective_at
FROM alert_event e JOIN clinical_alerts a USING (alert_id)
WHERE e.event_id = ANY(%s)
"""

#: E-mail an organisation about events (once per event and recipient).
_EMAIL_ORG_SQL: Final = """
INSERT INTO event_deliveries (event_id, patient_id, org_id, channel, target_id)
SELECT d.event_id, d.patient_id, r.org_id, 'email', r.recipient_id
FROM event_deliveries d JOIN email_recipients r ON r.org_id = d.org_id
WHERE d.delivery_id = ANY(%s)
ON CONFLICT DO NOTHING
"""


def event_body(row: dict[str, Any]) -> bytes:
    """The JSON body of one event (Standard Webhooks envelope: type, timestamp, data)."""
    body = {
        "type": f"alert.{row['type']}",
        "timestamp": row["at"].astimezone(UTC).isoformat(),
        "data": {
            "event_id": row["event_id"],
            "event": row["type"],
            "actor": row["actor"],
            "alert": {
                "alert_id": row["alert_id"],
                "patient_id": row["patient_id"],
                "rule_id": row["rule_code"],
                "rule_version": row["rule_version"],
                "level": row["level"],
                "state": row["state"],
                "late": row["late"],
                "value": row["value"],
                "unit": row["unit"],
                "message": row["message"],
                "occurrences": row["occurrences"],
                "effective_at": row["effective_at"].astimezone(UTC).isoformat(),
            },
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def email_message(row: dict[str, Any], to: str, smtp: SmtpSettings) -> EmailMessage:
    """A deliberately bare message: level, alert id and event, and where to look."""
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    level = str(row["level"]).upper()
    msg["Subject"] = f"telehub: {level} alert {row['alert_id']} ({row['type']})"
    msg["Message-ID"] = f"<telehub-event-{row['event_id']}-{to}@telehub>"
    link = f"\nOpen the worklist: {smtp.worklist_url}\n" if smtp.worklist_url else ""
    msg.set_content(
        f"A {level} alert (id {row['alert_id']}) has a new event: {row['type']}.\n"
        "The details are in telehub; this message carries none on purpose.\n" + link
    )
    return msg


class DeliveryWorker:
    """Delivers due ``event_deliveries`` rows; ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        dsn: str,
        *,
        pool: Pool | None = None,
        options: DeliveryOptions | None = None,
        smtp: SmtpSettings | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Any = time.time,
    ) -> None:
        self.dsn = dsn
        self.options = options or DeliveryOptions()
        self.smtp = smtp
        self._pool = pool
        self._client = client
        self._clock = clock
        self.stats = DeliveryStats()
        self.listening = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        own_pool = self._pool is None
        pool = self._pool or make_pool(self.dsn, max_size=2, name="telehub-delivery")
        own_client = self._client is None
        client = self._client or httpx.AsyncClient(
            timeout=self.options.request_timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        if own_pool:
            await pool.open(wait=False)
        wake = asyncio.Event()

        async def on_listening() -> None:
            self.listening.set()

        listener = asyncio.create_task(
            listen_forever(self.dsn, CHANNEL, lambda _p: wake.set(), on_connected=on_listening),
            name="delivery-listen",
        )
        log.info("delivery worker started")
        try:
            while not stop.is_set():
                wait = self.options.poll_interval
                try:
                    attempted, next_due = await self.deliver_due(pool, client)
                except (psycopg.Error, TimeoutError) as exc:
                    self.stats.db_errors += 1
                    log.warning("delivery worker: database error (%s)", type(exc).__name__)
                else:
                    if attempted >= self.options.batch_size:
                        continue
                    if next_due is not None:
                        wait = min(wait, max(0.0, next_due))
                await wait_any((wake, stop), wait)
                wake.clear()
        finally:
            await cancel_and_wait(listener)
            if own_client:
                await client.aclose()
            if own_pool:
                await pool.close()
            log.info("delivery worker stopped")

    async def deliver_due(self, pool: Pool, client: httpx.AsyncClient) -> tuple[int, float | None]:
        """One round: claim, send concurrently, record. Returns (claimed, seconds to next due)."""
        opts = self.options
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn:
                cur = await conn.execute(
                    _CLAIM_SQL, {"batch": opts.batch_size, "lease": opts.lease}
                )
                claims = [
                    _Claim(int(r[0]), int(r[1]), str(r[2]), Channel(r[3]), int(r[4]), int(r[5]),
                           bool(r[6]), r[7], r[8], bool(r[9]), r[10])
                    for r in await cur.fetchall()
                ]  # fmt: skip
                rows: dict[int, dict[str, Any]] = {}
                if claims:
                    async with conn.cursor(row_factory=dict_row) as dcur:
                        await dcur.execute(_EVENTS_SQL, (sorted({c.event_id for c in claims}),))
                        rows = {int(r["event_id"]): r for r in await dcur.fetchall()}
        if claims:
            sem = asyncio.Semaphore(opts.concurrency)

            async def one(c: _Claim) -> _Result:
                async with sem:
                    return await self._send(client, c, rows.get(c.event_id))

            results = await asyncio.gather(*(one(c) for c in claims))
            await self._record(pool, results)
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 "
                        "FROM event_deliveries WHERE delivered_at IS NULL "
                        "AND cancelled_at IS NULL AND next_attempt_at < %s",
                        (FAILED_SENTINEL,),
                    )
                ).fetchone()
        return len(claims), None if row is None or row[0] is None else float(row[0])

    async def _send(
        self, client: httpx.AsyncClient, c: _Claim, row: dict[str, Any] | None
    ) -> _Result:
        if not c.followed:
            return _Result(c, _Outcome.CANCELLED, Cancel.CARE_RELATION_ENDED)
        if row is None or (c.channel is Channel.WEBHOOK and c.url is None):
            return _Result(c, _Outcome.CANCELLED, Cancel.TARGET_REMOVED)
        if c.channel is Channel.EMAIL:
            if c.address is None:
                return _Result(c, _Outcome.CANCELLED, Cancel.TARGET_REMOVED)
            return await self._email(c, row, c.address)
        if c.disabled:
            return _Result(c, _Outcome.CANCELLED, Cancel.ENDPOINT_DISABLED)
        assert c.url is not None
        body = event_body(row)
        msg_id = f"evt_{c.event_id}"
        headers = {
            "Content-Type": "application/json",
            **standard_webhooks.headers(c.secret, msg_id, int(self._clock()), body),
        }
        try:
            async with asyncio.timeout(self.options.request_timeout + 1):
                response = await client.post(c.url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            text = str(exc)
            err = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            return _Result(c, _Outcome.RETRY, err[:MAX_ERROR_CHARS])
        if 200 <= response.status_code < 300:
            return _Result(c, _Outcome.DELIVERED)
        if response.status_code == 410:
            return _Result(c, _Outcome.GONE, "HTTP 410 Gone")
        return _Result(c, _Outcome.RETRY, f"HTTP {response.status_code}")

    async def _email(self, c: _Claim, row: dict[str, Any], to: str) -> _Result:
        smtp = self.smtp
        if smtp is None:
            return _Result(c, _Outcome.RETRY, "no SMTP server configured (TELEHUB_SMTP_HOST)")
        try:
            await aiosmtplib.send(
                email_message(row, to, smtp),
                hostname=smtp.host,
                port=smtp.port,
                start_tls=smtp.start_tls,
                username=smtp.username,
                password=smtp.password,
                timeout=self.options.request_timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _Result(c, _Outcome.RETRY, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        return _Result(c, _Outcome.DELIVERED)

    async def _record(self, pool: Pool, results: list[_Result]) -> None:
        opts = self.options
        email_orgs: list[int] = []  # deliveries whose organisation is to be e-mailed as well
        async with asyncio.timeout(opts.query_timeout):
            async with pool.connection() as conn, conn.transaction():
                for r in results:
                    c = r.claim
                    attempt = c.attempts + 1
                    if r.outcome is _Outcome.DELIVERED:
                        await conn.execute(
                            "UPDATE event_deliveries SET delivered_at = now(), attempts = %s, "
                            "last_error = NULL WHERE delivery_id = %s",
                            (attempt, c.delivery_id),
                        )
                        self.stats.delivered += 1
                        log.info("delivered %s %d (event %d)", c.channel, c.delivery_id, c.event_id)
                    elif r.outcome is _Outcome.CANCELLED:
                        await conn.execute(
                            "UPDATE event_deliveries SET cancelled_at = now(), cancel_reason = %s "
                            "WHERE delivery_id = %s",
                            (r.error, c.delivery_id),
                        )
                        self.stats.cancelled += 1
                        if r.error == Cancel.ENDPOINT_DISABLED:
                            email_orgs.append(c.delivery_id)
                        log.info("delivery %d cancelled: %s", c.delivery_id, r.error)
                    elif r.outcome is _Outcome.GONE:
                        in_batch = [x.claim.delivery_id for x in results]
                        await self._disable(conn, c, attempt, in_batch)
                        email_orgs.append(c.delivery_id)
                    else:
                        give_up = attempt >= opts.max_attempts
                        await conn.execute(
                            "UPDATE event_deliveries SET attempts = %s, last_error = %s, "
                            "next_attempt_at = CASE WHEN %s THEN %s "
                            "ELSE now() + make_interval(secs => %s) END WHERE delivery_id = %s",
                            (attempt, r.error, give_up, FAILED_SENTINEL, opts.backoff(attempt),
                             c.delivery_id),
                        )  # fmt: skip
                        self.stats.failed_attempts += 1
                        if c.channel is Channel.WEBHOOK and attempt == opts.email_after:
                            email_orgs.append(c.delivery_id)
                        if give_up:
                            self.stats.gave_up += 1
                            log.warning(
                                "delivery %d failed for good after %d attempts",
                                c.delivery_id,
                                attempt,
                            )
                if email_orgs:
                    await conn.execute(_EMAIL_ORG_SQL, (email_orgs,))
                    await conn.execute("SELECT pg_notify(%s, 'email')", (CHANNEL,))

    async def _disable(
        self, conn: psycopg.AsyncConnection[Any], c: _Claim, attempt: int, in_batch: list[int]
    ) -> None:
        """HTTP 410: the endpoint is gone for good. Disable it, cancel what was queued for it
        (those events go out by e-mail instead) and say so loudly (an operator must act).
        Rows of this same batch keep their own outcome (one may have been delivered already);
        a retried one is cancelled when it is next claimed."""
        await conn.execute(
            "UPDATE event_deliveries SET attempts = %s, last_error = 'HTTP 410 Gone', "
            "cancelled_at = now(), cancel_reason = %s WHERE delivery_id = %s",
            (attempt, Cancel.ENDPOINT_DISABLED.value, c.delivery_id),
        )
        await conn.execute(
            "UPDATE webhooks SET disabled_at = now(), disabled_reason = 'HTTP 410 Gone' "
            "WHERE webhook_id = %s AND disabled_at IS NULL",
            (c.target_id,),
        )
        cur = await conn.execute(
            "UPDATE event_deliveries SET cancelled_at = now(), cancel_reason = %s "
            "WHERE channel = 'webhook' AND target_id = %s AND delivered_at IS NULL "
            "AND cancelled_at IS NULL AND NOT delivery_id = ANY(%s) RETURNING delivery_id",
            (Cancel.ENDPOINT_DISABLED.value, c.target_id, in_batch),
        )
        others = [int(r[0]) for r in await cur.fetchall()]
        if others:
            await conn.execute(_EMAIL_ORG_SQL, (others,))
        self.stats.disabled_endpoints += 1
        self.stats.cancelled += 1 + len(others)
        log.warning(
            "webhook %d of org %s answered 410 Gone: disabled, %d queued deliveries moved to "
            "e-mail",
            c.target_id,
            c.org_id,
            len(others),
        )
