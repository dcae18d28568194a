"""The durable webhook worker against a real HTTP server (uvicorn) and real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from gateway.notify.pool import make_pool
from gateway.notify.webhook import (
    FAILED_SENTINEL,
    WebhookOptions,
    WebhookWorker,
    backoff_delay,
    verify,
)
from tests.gateway.api_support import add_webhook, raise_alert, receiver, seed, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


@asynccontextmanager
async def pool_client(
    db: str, timeout: float = 5.0
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    pool = make_pool(db, max_size=4)
    await pool.open(wait=True, timeout=10)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            yield pool, client
    finally:
        await pool.close()


def delivery_rows(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            """SELECT webhook_id, attempts, delivered_at IS NOT NULL, last_error,
                      next_attempt_at = %s,
                      extract(epoch FROM next_attempt_at - now())::float8
               FROM alert_deliveries ORDER BY webhook_id""",
            (FAILED_SENTINEL,),
        ).fetchall()


def make_due(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE alert_deliveries SET next_attempt_at = now() WHERE delivered_at IS NULL"
        )


def test_backoff_is_exponential_and_capped() -> None:
    opts = WebhookOptions(backoff_base=5, backoff_cap=60)
    assert [backoff_delay(n, opts) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


async def test_worker_wakes_on_notify_and_posts_the_signed_alert(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    stop = asyncio.Event()
    async with receiver() as rec:
        signed = add_webhook(db, "rh", f"{rec.base}/rh", "s3cret")
        unsigned = add_webhook(db, "gp", f"{rec.base}/gp", None)
        add_webhook(db, "ops", f"{rec.base}/ops", "x")  # ops does not follow p-001
        worker = WebhookWorker(db, options=WebhookOptions(poll_interval=60))
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(worker.listening.wait(), 5)
        await asyncio.sleep(0.2)  # the first (empty) round is done: now only NOTIFY wakes it
        alert_id = await raise_alert(db, "p-001", reading_time=T0, value="87.50")
        await wait_for(lambda: len(rec.requests) == 2, timeout=3)
        stop.set()
        await asyncio.wait_for(task, 5)

    by_path = {r.path: r for r in rec.requests}
    rh = by_path["/rh"]
    payload = json.loads(rh.body)
    assert payload == {
        "type": "alert",
        "alert": {
            "alert_id": alert_id,
            "patient_id": "p-001",
            "rule_id": payload["alert"]["rule_id"],
            "reading_key": "key-2025-03-01T10:00:00+00:00",
            "reading_time": "2025-03-01T10:00:00Z",
            "mdc": 150456,
            "metric": "SpO2",
            "value": "87.50",
            "unit": "%",
            "severity": "critical",
            "message": "SpO2 below 90 %",
            "raised_at": payload["alert"]["raised_at"],
            "occurrences": 1,
            "last_value": "87.50",
            "last_seen_at": "2025-03-01T10:00:00Z",
            "status": "open",
            "acknowledged_at": None,
            "acknowledged_by": None,
            "acknowledged_org": None,
        },
    }
    expected = "sha256=" + hmac.new(b"s3cret", rh.body, hashlib.sha256).hexdigest()
    assert {
        k: rh.headers[k]
        for k in ("content-type", "x-telehub-signature", "x-telehub-delivery", "x-telehub-attempt")
    } == {
        "content-type": "application/json",
        "x-telehub-signature": expected,
        "x-telehub-delivery": f"{alert_id}.{signed}",
        "x-telehub-attempt": "1",
    }
    assert verify("s3cret", rh.body, expected) and not verify("other", rh.body, expected)
    gp = by_path["/gp"]
    assert "x-telehub-signature" not in gp.headers
    assert gp.headers["x-telehub-delivery"] == f"{alert_id}.{unsigned}"
    assert [r[:5] for r in delivery_rows(db)] == [
        (signed, 1, True, None, False),
        (unsigned, 1, True, None, False),
    ]
    assert (worker.stats.delivered, worker.stats.failed_attempts) == (2, 0)
    # ids only in the logs: no values, no message, no patient name
    assert f"alert {alert_id} webhook {signed}" in caplog.text
    for secret in ("87.50", "SpO2 below", "Anna"):
        assert secret not in caplog.text


async def test_retry_bookkeeping_after_500_then_success(db: str) -> None:
    opts = WebhookOptions(backoff_base=5.0, backoff_cap=60.0)
    async with receiver(statuses=[500, 503]) as rec, pool_client(db) as (pool, client):
        hook = add_webhook(db, "rh", f"{rec.base}/hook", "k")
        await raise_alert(db, "p-001", reading_time=T0)
        worker = WebhookWorker(db, options=opts)

        result = await worker.deliver_due(pool, client)
        assert result.attempted == 1
        [(wid, attempts, delivered, error, failed, due_in)] = delivery_rows(db)
        assert (wid, attempts, delivered, error, failed) == (hook, 1, False, "HTTP 500", False)
        assert 4.0 < due_in <= 5.0

        # nothing is due until the backoff has passed
        result = await worker.deliver_due(pool, client)
        assert result.attempted == 0
        assert result.next_due_in is not None and 3.5 < result.next_due_in <= 5.0

        make_due(db)
        await worker.deliver_due(pool, client)
        [(_, attempts, delivered, error, failed, due_in)] = delivery_rows(db)
        assert (attempts, delivered, error, failed) == (2, False, "HTTP 503", False)
        assert 9.0 < due_in <= 10.0

        make_due(db)
        await worker.deliver_due(pool, client)
        assert [r[:5] for r in delivery_rows(db)] == [(hook, 3, True, None, False)]
        assert [r.headers["x-telehub-attempt"] for r in rec.requests] == ["1", "2", "3"]
        assert len({r.body for r in rec.requests}) == 1  # the same alert each time
        assert (await worker.deliver_due(pool, client)).next_due_in is None


async def test_run_loop_retries_on_its_own_with_short_backoff(db: str) -> None:
    stop = asyncio.Event()
    async with receiver(statuses=[500, 500]) as rec:
        add_webhook(db, "rh", f"{rec.base}/hook", "k")
        await raise_alert(db, "p-001", reading_time=T0)
        worker = WebhookWorker(db, options=WebhookOptions(backoff_base=0.1, poll_interval=30))
        task = asyncio.create_task(worker.run(stop))
        await wait_for(lambda: worker.stats.delivered == 1, timeout=5)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert [r.headers["x-telehub-attempt"] for r in rec.requests] == ["1", "2", "3"]


async def test_gives_up_after_max_attempts_and_stays_failed(db: str) -> None:
    opts = WebhookOptions(max_attempts=2, backoff_base=1)
    async with receiver(statuses=[500] * 5) as rec, pool_client(db) as (pool, client):
        hook = add_webhook(db, "rh", f"{rec.base}/hook", "k")
        await raise_alert(db, "p-001", reading_time=T0)
        worker = WebhookWorker(db, options=opts)
        await worker.deliver_due(pool, client)
        make_due(db)
        await worker.deliver_due(pool, client)
        assert [r[:5] for r in delivery_rows(db)] == [(hook, 2, False, "HTTP 500", True)]
        assert (worker.stats.failed_attempts, worker.stats.gave_up) == (2, 1)
        result = await worker.deliver_due(pool, client)
        assert (result.attempted, result.next_due_in, len(rec.requests)) == (0, None, 2)


async def test_connection_errors_and_timeouts_are_recorded(db: str, unused_tcp_port: int) -> None:
    async with receiver(delay=0.5) as rec, pool_client(db, timeout=0.2) as (pool, client):
        slow = add_webhook(db, "rh", f"{rec.base}/slow", "k")
        closed = add_webhook(db, "gp", f"http://127.0.0.1:{unused_tcp_port}/x", "k")
        await raise_alert(db, "p-001", reading_time=T0)
        worker = WebhookWorker(db, options=WebhookOptions(request_timeout=0.2))
        await worker.deliver_due(pool, client)
    rows = {r[0]: r for r in delivery_rows(db)}
    assert rows[slow][1:3] == (1, False) and rows[slow][3].startswith("ReadTimeout")
    assert rows[closed][1:3] == (1, False) and rows[closed][3].startswith("ConnectError")


async def test_concurrent_workers_deliver_each_row_once(db: str) -> None:
    async with receiver(delay=0.05) as rec, pool_client(db) as (pool, client):
        hooks = [add_webhook(db, "rh", f"{rec.base}/h{i}", "k") for i in range(8)]
        alert_id = await raise_alert(db, "p-001", reading_time=T0)
        workers = [WebhookWorker(db, options=WebhookOptions(batch_size=2)) for _ in range(3)]

        async def drain(w: WebhookWorker) -> None:
            while (await w.deliver_due(pool, client)).attempted:
                pass

        await asyncio.gather(*(drain(w) for w in workers))
    assert sorted(r.headers["x-telehub-delivery"] for r in rec.requests) == sorted(
        f"{alert_id}.{h}" for h in hooks
    )
    assert sum(w.stats.delivered for w in workers) == 8
    assert all(r[2] for r in delivery_rows(db))


async def test_lease_makes_a_claimed_row_invisible_until_it_expires(db: str) -> None:
    # a worker that died after claiming: the row is due again only after the lease
    add_webhook(db, "rh", "http://127.0.0.1:9/x", "k")
    await raise_alert(db, "p-001", reading_time=T0)
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE alert_deliveries SET next_attempt_at = now() + interval '25 s'")
    async with pool_client(db) as (pool, client):
        worker = WebhookWorker(db, options=WebhookOptions(request_timeout=10))
        result = await worker.deliver_due(pool, client)
    assert result.attempted == 0
    assert result.next_due_in is not None and 20 < result.next_due_in <= 25
