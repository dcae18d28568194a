"""Live alert stream (SSE) over a real uvicorn server and real PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from gateway.api import create_app
from gateway.api.sse import EventStreamResponse
from gateway.notify.alerts import AlertEvent, AlertView, fetch_alert_events
from gateway.notify.stream import AlertBroadcaster
from tests.gateway.api_support import auth, raise_alert, seed, serve

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


class SseClient:
    """Reads server-sent events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        """The next (event, data) — data JSON-decoded — or ("comment", text)."""
        event, data = "message", list[str]()
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return "comment", line[1:].strip()
                if line == "":
                    if data:
                        return event, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
            return "eof", None

    async def next_event(self, timeout: float = 5.0) -> tuple[str, Any]:
        """Like next(), skipping heartbeat comments."""
        while True:
            kind, data = await self.next(timeout)
            if kind != "comment":
                return kind, data


@asynccontextmanager
async def sse(base: str, org: str) -> AsyncIterator[SseClient]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/alerts/stream", headers=auth(org)) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        client = SseClient(r)
        assert await client.next_event() == ("ready", {"org_id": org, "heartbeat": 15.0})
        yield client


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    return fresh_db


async def test_alerts_reach_only_the_orgs_following_the_patient(db: str) -> None:
    received: list[AlertView] = []
    app = create_app(db, on_alert=received.append)
    async with serve(app) as base, sse(base, "rh") as rh, sse(base, "gp") as gp:
        other = await raise_alert(
            db, "p-002", reading_time=T0, value="191", unit="mm[Hg]", mdc=150021
        )
        kind, data = await gp.next_event()
        assert (kind, data["alert_id"], data["patient_id"], data["value"]) == (
            "alert",
            other,
            "p-002",
            "191",
        )

        shared = await raise_alert(db, "p-001", reading_time=T0, value="87.50")
        for client in (rh, gp):  # rh's first alert is p-001's: it never saw p-002's
            kind, data = await client.next_event()
            assert (kind, data["alert_id"], data["value"], data["occurrences"], data["status"]) == (
                "alert",
                shared,
                "87.50",
                1,
                "open",
            )

        # a further occurrence and the acknowledgement are events of the same alert
        await raise_alert(db, "p-001", reading_time=T0 + timedelta(seconds=1), value="86")
        kind, data = await rh.next_event()
        assert (kind, data["alert_id"], data["occurrences"], data["last_value"]) == (
            "alert",
            shared,
            2,
            "86",
        )
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.post(f"/api/v1/alerts/{shared}/ack", headers=auth("gp"))
            assert r.status_code == 200
        for client in (rh, gp):
            while True:  # skip the occurrence update gp has not read yet
                kind, data = await client.next_event()
                if data["status"] == "acknowledged":
                    break
            assert (data["alert_id"], data["acknowledged_by"], data["acknowledged_org"]) == (
                shared,
                "Dr. Berg",
                "gp",
            )
    assert [(a.alert_id, a.occurrences, a.status) for a in received] == [
        (other, 1, "open"),
        (shared, 1, "open"),
        (shared, 2, "open"),
        (shared, 2, "acknowledged"),
    ]


async def test_heartbeat_comments_and_shutdown_close(db: str) -> None:
    app = create_app(db, heartbeat=0.2)
    async with (
        serve(app) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/alerts/stream", headers=auth("rh")) as r,
    ):
        client = SseClient(r)
        assert await client.next_event() == ("ready", {"org_id": "rh", "heartbeat": 0.2})
        assert await client.next(timeout=2) == ("comment", "keepalive")
        assert await client.next(timeout=2) == ("comment", "keepalive")
        assert app.state.telehub.broadcaster.stats().subscribers == 1
        app.state.telehub.close_streams("shutdown")
        assert await client.next_event() == ("close", {"reason": "shutdown"})
        assert await client.next_event() == ("eof", None)


async def test_slow_client_is_disconnected_not_buffered(db: str) -> None:
    app = create_app(db, stream_queue_size=3)
    broadcaster = app.state.telehub.broadcaster
    async with serve(app) as base, sse(base, "rh") as rh, sse(base, "gp") as gp:
        first = await raise_alert(db, "p-001", reading_time=T0)
        assert (await rh.next_event())[1]["alert_id"] == first
        assert (await gp.next_event())[1]["alert_id"] == first
        # a burst the clients cannot take before their queues fill (published synchronously)
        async with await psycopg.AsyncConnection.connect(db) as conn:
            [event] = await fetch_alert_events(conn, [first])
        for n in range(2, 12):
            broadcaster.publish(
                AlertEvent(alert=event.alert.model_copy(update={"occurrences": n}), orgs=event.orgs)
            )
        for client in (rh, gp):
            got = [await client.next_event() for _ in range(4)]
            assert [(k, d.get("occurrences", d.get("reason"))) for k, d in got] == [
                ("alert", 2),
                ("alert", 3),
                ("alert", 4),
                ("close", "slow_consumer"),
            ]
            assert await client.next_event() == ("eof", None)
        assert broadcaster.stats().slow_consumers_closed == 2
        assert broadcaster.stats().subscribers == 0


async def test_a_client_that_stopped_reading_is_cut_after_the_grace() -> None:
    # ASGI level: a send() that never returns is what a full socket buffer looks like
    broadcaster = AlertBroadcaster(queue_size=2)
    broadcaster.listening.set()
    sub = broadcaster.subscribe("rh")
    response = EventStreamResponse(sub, broadcaster, heartbeat=60, stuck_grace=0.1)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if len(sent) >= 3:  # response start, "ready", then the socket is full
            await asyncio.Event().wait()

    async def receive() -> Any:
        await asyncio.Event().wait()

    task = asyncio.create_task(response({"type": "http"}, receive, send))
    event = AlertEvent(
        alert=AlertView(alert_id=1, patient_id="p-001", raised_at=T0, occurrences=1, status="open"),
        orgs=frozenset({"rh"}),
    )
    for n in range(1, 5):
        broadcaster.publish(
            AlertEvent(alert=event.alert.model_copy(update={"occurrences": n}), orgs=event.orgs)
        )
        await asyncio.sleep(0.01)
    async with asyncio.timeout(2):
        await task
    assert (sub.reason, broadcaster.stats().subscribers, len(sent)) == ("slow_consumer", 0, 3)
    assert sent[2]["body"].startswith(b"id: 1-1-o\nevent: alert\ndata: {")


async def test_stream_catches_up_after_losing_its_listen_connection(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.notify")
    app = create_app(db)
    async with serve(app) as base, sse(base, "rh") as rh:
        with psycopg.connect(db, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query = 'LISTEN \"telehub_alerts\"'"
            ).fetchall()
        assert killed == [(True,)]
        # raised while the stream may be reconnecting: delivered by NOTIFY or by the catch-up
        alert_id = await raise_alert(db, "p-001", reading_time=T0)
        kind, data = await rh.next_event(timeout=10)
        assert (kind, data["alert_id"]) == ("alert", alert_id)
        assert "live stream: re-reading 1 alerts after reconnecting" in caplog.text
        # and only once
        await raise_alert(db, "p-001", reading_time=T0 + timedelta(seconds=1))
        kind, data = await rh.next_event(timeout=10)
        assert (kind, data["alert_id"], data["occurrences"]) == ("alert", alert_id, 2)
