"""Delivery of clinical alert events (gateway/notify/delivery.py) against real PostgreSQL, a real
HTTP receiver (uvicorn), the reference Standard Webhooks verifier and a real SMTP server."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.alerting import store
from gateway.alerting.model import AlertLevel, AlertState, Finding
from gateway.notify import standard_webhooks
from gateway.notify.delivery import DeliveryOptions, DeliveryWorker, SmtpSettings
from gateway.notify.pool import make_pool
from tests.fixtures.fix_mqtt import free_port
from tests.gateway.api_support import Receiver, add_webhook, receiver, seed, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
KEY = base64.b64encode(b"telehub-test-key-0123456789abcdef").decode()
SECRET = f"whsec_{KEY}"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Mailbox, SmtpSettings]]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, SmtpSettings(host="127.0.0.1", port=port, sender="telehub@test.example",
                                worklist_url="https://telehub.example/")  # fmt: skip
    finally:
        controller.stop()


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


def finding(patient: str = "p-001", *, late: bool = False, key: str = "k1") -> Finding:
    return Finding(patient, "S1", 1, AlertLevel.RED, AlertState.OPEN, key, T0, Decimal("85"),
                   "%", late, "SpO2 low", {"red_low[150456 %]": "88"})  # fmt: skip


async def apply(db: str, f: Finding) -> int:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        applied = await store.apply_finding(conn, f, T0)
        await conn.commit()
    return applied.alert_id


async def act(db: str, what: str, alert_id: int) -> None:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        if what == "ack":
            await store.acknowledge(conn, alert_id, "Dr. Hansen", "called", T0)
        else:
            await store.resolve(conn, alert_id, "Dr. Hansen", "fine", T0)
        await conn.commit()


def rows(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            """SELECT e.type, d.org_id, d.channel, d.attempts, d.delivered_at IS NOT NULL,
                      d.cancel_reason, d.last_error
               FROM event_deliveries d JOIN alert_event e USING (event_id)
               ORDER BY d.delivery_id"""
        ).fetchall()


def make_due(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE event_deliveries SET next_attempt_at = now() "
            "WHERE delivered_at IS NULL AND cancelled_at IS NULL AND next_attempt_at < '9000-01-01'"
        )


@asynccontextmanager
async def worker(
    db: str, smtp: SmtpSettings | None = None, **options: Any
) -> AsyncIterator[DeliveryWorker]:
    pool = make_pool(db, max_size=3)
    await pool.open(wait=True, timeout=10)
    opts = replace(DeliveryOptions(backoff_base=60, poll_interval=0.2), **options)
    w = DeliveryWorker(db, pool=pool, options=opts, smtp=smtp)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        await wait_for(w.listening.is_set, 10)
        yield w
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await pool.close()


def verified(rec: Receiver, secret: str | bytes) -> list[dict[str, Any]]:
    """Every request's body, verified by the reference library (standardwebhooks on PyPI)."""
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers) for r in rec.requests]


def test_signature_interoperates_with_the_reference_library() -> None:
    body = b'{"type":"alert.created"}'
    now = int(time.time())
    got = standard_webhooks.headers(SECRET, "evt_7", now, body)
    assert Webhook(SECRET).verify(body, got) == {"type": "alert.created"}
    # a secret that is not whsec_ base64 is its UTF-8 bytes (the reference takes bytes as such)
    got = standard_webhooks.headers("plain text secret", "evt_7", now, body)
    Webhook(b"plain text secret").verify(body, got)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", standard_webhooks.headers(SECRET, "evt_7", now, body))
    got = standard_webhooks.headers(SECRET, "evt_7", now, body)
    rotated = "v1,b2xk " + got["webhook-signature"]  # during a key rotation: several signatures
    standard_webhooks.verify(SECRET, got | {"webhook-signature": rotated}, body, now=now)
    with pytest.raises(standard_webhooks.SignatureError, match="tolerance"):
        standard_webhooks.verify(SECRET, got, body, now=now + 301)
    with pytest.raises(standard_webhooks.SignatureError, match="missing"):
        standard_webhooks.verify(SECRET, {}, body, now=now)


async def test_new_alert_and_resolve_are_delivered_signed_ack_is_not(db: str) -> None:
    async with receiver() as rec:
        add_webhook(db, "rh", f"{rec.base}/rh", SECRET)
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        async with worker(db) as w:
            alert = await apply(db, finding())
            await wait_for(lambda: len(rec.requests) == 2, 10)
            await act(db, "ack", alert)  # not notifiable: nobody is paged for an ack
            await act(db, "resolve", alert)  # notifiable: the alert had paged
            await wait_for(lambda: len(rec.requests) == 4, 10)
            await asyncio.sleep(0.5)
        assert w.stats.delivered == 4
    bodies = verified(rec, SECRET)
    assert sorted((r.path, b["type"]) for r, b in zip(rec.requests, bodies, strict=True)) == [
        ("/gp", "alert.created"), ("/gp", "alert.resolved"),
        ("/rh", "alert.created"), ("/rh", "alert.resolved"),
    ]  # fmt: skip
    created = next(b for b in bodies if b["type"] == "alert.created")
    assert created["data"]["alert"] | {"alert_id": 0} == {
        "alert_id": 0, "patient_id": "p-001", "rule_id": "S1", "rule_version": 1, "level": "red",
        "state": "open", "late": False, "value": "85", "unit": "%", "message": "SpO2 low",
        "occurrences": 1, "effective_at": T0.isoformat(),
    }  # fmt: skip
    ids = {r.headers["webhook-id"] for r in rec.requests}
    assert len(ids) == 2 and all(i.startswith("evt_") for i in ids)
    assert [r[:5] for r in rows(db)] == [
        ("created", "rh", "webhook", 1, True), ("created", "gp", "webhook", 1, True),
        ("resolved", "rh", "webhook", 1, True), ("resolved", "gp", "webhook", 1, True),
    ]  # fmt: skip


async def test_late_or_pending_findings_page_nobody(db: str) -> None:
    await apply(db, finding(late=True))
    await apply(db, replace(finding("p-002", key="k2"), state=AlertState.PENDING))
    assert rows(db) == []


async def test_retry_keeps_the_webhook_id_and_backs_off(db: str) -> None:
    async with receiver(statuses=[500, 503]) as rec:
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        async with worker(db) as w:
            await apply(db, finding("p-002"))
            await wait_for(lambda: len(rec.requests) == 1, 10)
            await wait_for(lambda: w.stats.failed_attempts == 1, 5)
            assert rows(db)[0][3:] == (1, False, None, "HTTP 500")
            make_due(db)
            await wait_for(lambda: len(rec.requests) == 2, 10)
            make_due(db)
            await wait_for(lambda: len(rec.requests) == 3, 10)
            await wait_for(lambda: w.stats.delivered == 1, 5)
    assert len({r.headers["webhook-id"] for r in rec.requests}) == 1
    assert [b["type"] for b in verified(rec, SECRET)] == ["alert.created"] * 3
    assert rows(db)[0][3:5] == (3, True)


async def test_410_disables_the_endpoint_and_moves_queued_events_to_email(
    db: str, smtp: tuple[_Mailbox, SmtpSettings]
) -> None:
    box, settings = smtp
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO email_recipients (org_id, address) VALUES ('gp', 'gp@x.dk')")
    async with receiver(statuses=[410]) as rec:
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        # two events queued before the worker runs: the 410 on the first cancels the second
        await apply(db, finding("p-002"))
        await apply(db, replace(finding("p-002", key="k2"), rule_id="S2"))
        async with worker(db, settings, batch_size=1) as w:
            await wait_for(lambda: len(box.messages) == 2, 10)
            await asyncio.sleep(0.3)
        assert len(rec.requests) == 1
        assert w.stats.disabled_endpoints == 1
    with psycopg.connect(db) as conn:
        disabled = conn.execute("SELECT disabled_reason FROM webhooks").fetchall()
    assert disabled == [("HTTP 410 Gone",)]
    got = sorted((r[2], r[4], r[5]) for r in rows(db))
    assert got == [
        ("email", True, None), ("email", True, None),
        ("webhook", False, "endpoint disabled"), ("webhook", False, "endpoint disabled"),
    ]  # fmt: skip
    to, msg = box.messages[0]
    assert to == ["gp@x.dk"]
    assert "RED alert" in msg["Subject"]
    text = msg.get_payload()
    assert isinstance(text, str)
    assert "85" not in text and "p-002" not in text and "SpO2" not in text  # nothing clinical
    assert "https://telehub.example/" in text
    # the next event goes by e-mail directly: the org has no enabled webhook any more
    await apply(db, replace(finding("p-002", key="k3"), rule_id="S3"))
    assert [r[2] for r in rows(db)][-1] == "email"


async def test_repeated_failure_escalates_to_email_once(
    db: str, smtp: tuple[_Mailbox, SmtpSettings]
) -> None:
    box, settings = smtp
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO email_recipients (org_id, address) VALUES ('gp', 'gp@x.dk')")
    async with receiver(statuses=[500] * 10) as rec:
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        async with worker(db, settings, email_after=2) as w:
            await apply(db, finding("p-002"))
            await wait_for(lambda: w.stats.failed_attempts == 1, 10)
            assert box.messages == []
            for n in (2, 3):
                make_due(db)
                await wait_for(lambda n=n: w.stats.failed_attempts == n, 10)
            await wait_for(lambda: len(box.messages) == 1, 10)
            await asyncio.sleep(0.3)
        assert len(rec.requests) == 3
    assert len(box.messages) == 1  # once, not once per further failure


async def test_an_org_that_stopped_following_the_patient_gets_nothing(db: str) -> None:
    async with receiver() as rec:
        add_webhook(db, "rh", f"{rec.base}/rh", SECRET)
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        await apply(db, finding())  # queued for rh and gp
        with psycopg.connect(db) as conn:
            conn.execute("DELETE FROM care_relations WHERE patient_id = 'p-001' AND org_id = 'rh'")
        async with worker(db) as w:
            await wait_for(lambda: w.stats.delivered + w.stats.cancelled == 2, 10)
    assert [r.path for r in rec.requests] == ["/gp"]
    assert sorted((r[1], r[5]) for r in rows(db)) == [
        ("gp", None),
        ("rh", "no care relation or consent gives access"),
    ]


async def test_a_refusal_cancels_the_queued_deliveries_to_that_organisation(db: str) -> None:
    async with receiver() as rec:
        add_webhook(db, "rh", f"{rec.base}/rh", SECRET)
        add_webhook(db, "gp", f"{rec.base}/gp", SECRET)
        await apply(db, finding())  # queued for rh and gp
        with psycopg.connect(db) as conn:  # the patient refuses the hospital (§42 a)
            conn.execute(
                "INSERT INTO consents (patient_id, kind, org_id, recorded_by, recorded_org) "
                "VALUES ('p-001', 'refusal', 'rh', 'sundhed.dk', 'ops')"
            )
        async with worker(db) as w:
            await wait_for(lambda: w.stats.delivered + w.stats.cancelled == 2, 10)
    assert [r.path for r in rec.requests] == ["/gp"]
    assert sorted((r[1], r[5]) for r in rows(db)) == [
        ("gp", None),
        ("rh", "no care relation or consent gives access"),
    ]


async def test_email_without_smtp_is_retried_and_says_why(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO email_recipients (org_id, address) VALUES ('gp', 'gp@x.dk')")
    async with worker(db) as w:
        await apply(db, finding("p-002"))
        await wait_for(lambda: w.stats.failed_attempts == 1, 10)
    (row,) = rows(db)
    assert row[2:5] == ("email", 1, False)
    assert "TELEHUB_SMTP_HOST" in row[6]


def test_body_is_json_with_the_event_envelope() -> None:
    from gateway.notify.delivery import event_body

    body = json.loads(
        event_body(
            {
                "type": "created",
                "at": T0,
                "event_id": 9,
                "actor": "engine",
                "alert_id": 1,
                "patient_id": "p",
                "rule_code": "S1",
                "rule_version": 2,
                "level": "red",
                "state": "open",
                "late": False,
                "value": "85",
                "unit": "%",
                "message": "m",
                "occurrences": 1,
                "effective_at": T0,
            }
        )
    )
    assert body["type"] == "alert.created" and body["timestamp"] == T0.isoformat()
    assert body["data"]["event_id"] == 9
