"""``GET /api/v1/worklist/stream`` on a real uvicorn server: event ids are the alert_event
sequence, Last-Event-ID replays from the database, other organisations' events never arrive,
reads are audited, and an event that commits after a higher id is still delivered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from gateway.alerting import store
from gateway.alerting.model import AlertLevel, AlertState, Finding
from gateway.api import create_app
from gateway.notify.events import GAP_WAIT, Cursor
from tests.gateway.api_support import auth, seed, serve

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def finding(patient: str, rule: str = "S1") -> Finding:
    return Finding(patient, rule, 1, AlertLevel.RED, AlertState.OPEN, f"k-{patient}-{rule}", T0,
                   Decimal("85"), "%", False, "SpO2 low", {})  # fmt: skip


async def apply(db: str, f: Finding) -> int:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        applied = await store.apply_finding(conn, f, T0)
        await conn.commit()
    return applied.alert_id


class Reader:
    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> tuple[int | None, str, Any]:
        """The next (id, event, data), skipping keep-alive comments."""
        ident: int | None = None
        event, data = "message", list[str]()
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":") or line.startswith("retry:"):
                    continue
                if line == "":
                    if data:
                        return ident, event, json.loads("\n".join(data))
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    ident = int(value)
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
        raise AssertionError("stream ended")

    async def silent(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            got = await self.next(seconds)
            raise AssertionError(f"unexpected {got}")


@asynccontextmanager
async def stream(
    base: str, org: str, last_event_id: int | None = None
) -> AsyncIterator[tuple[Reader, dict[str, Any]]]:
    headers = auth(org) | ({} if last_event_id is None else {"Last-Event-ID": str(last_event_id)})
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/worklist/stream", headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        reader = Reader(r)
        ident, event, ready = await reader.next()
        assert (ident, event) == (None, "ready")
        yield reader, ready


@pytest.fixture
async def base(fresh_db: str) -> AsyncIterator[str]:
    seed(fresh_db)
    async with serve(create_app(fresh_db, heartbeat=0.5)) as url:
        yield url


async def test_live_scoped_and_resumed_without_gaps(base: str, fresh_db: str) -> None:
    async with stream(base, "rh") as (s, ready):
        assert ready == {"org_id": "rh", "after": 0}
        alert = await apply(fresh_db, finding("p-001"))  # followed by rh and gp
        await apply(fresh_db, finding("p-002"))  # gp only: rh never sees it
        ident, event, data = await s.next()
        assert event == "alert-event" and ident == data["event_id"]
        assert (data["alert_id"], data["type"], data["level"], data["state"]) == (
            alert, "created", "red", "open",
        )  # fmt: skip
        assert data["value"] == "85" and data["patient_id"] == "p-001"
        await s.silent(1.0)
        assert ident is not None
        first = ident
    # while the client is away, the alert is acknowledged and resolved
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        await store.acknowledge(conn, alert, "Dr. Hansen", "called", T0)
        await store.resolve(conn, alert, "Dr. Hansen", "ok", T0)
        await conn.commit()
    async with stream(base, "rh", last_event_id=first) as (s, ready):
        assert ready["after"] == first
        got = [await s.next() for _ in range(2)]
        assert [(d["type"], d["state"]) for _, _, d in got] == [
            ("acknowledged", "resolved"), ("resolved", "resolved"),
        ]  # fmt: skip
        ids = [i for i, _, _ in got if i is not None]
        assert len(ids) == 2 and ids == sorted(ids) and ids[0] > first
        await s.silent(1.0)
    async with stream(base, "gp", last_event_id=0) as (s, _):
        got = [await s.next() for _ in range(4)]
        assert sorted(d["patient_id"] for _, _, d in got) == ["p-001"] * 3 + ["p-002"]
    with psycopg.connect(fresh_db) as conn:
        audited = conn.execute(
            "SELECT org_id, patient_id, sum(row_count) FROM audit_events "
            "WHERE resource = 'worklist-stream' GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    assert audited == [("gp", "p-001", 3), ("gp", "p-002", 1), ("rh", "p-001", 3)]


async def test_a_refusal_stops_the_stream_for_that_organisation_at_once(
    base: str, fresh_db: str
) -> None:
    async with stream(base, "rh") as (s, _):
        await apply(fresh_db, finding("p-001"))
        _, _, data = await s.next()
        assert data["patient_id"] == "p-001"
        with psycopg.connect(fresh_db) as conn:  # §42 a: the patient refuses the hospital
            conn.execute(
                "INSERT INTO consents (patient_id, kind, org_id, recorded_by, recorded_org) "
                "VALUES ('p-001', 'refusal', 'rh', 'sundhed.dk', 'rh')"
            )
        await apply(fresh_db, finding("p-001", rule="S2"))
        await s.silent(1.0)  # the live stream of the refused organisation stays quiet
    async with stream(base, "gp", last_event_id=0) as (s, _):  # the GP is not refused
        got = [await s.next() for _ in range(2)]
        assert [d["patient_id"] for _, _, d in got] == ["p-001", "p-001"]


async def test_an_event_committed_after_a_higher_id_still_arrives(base: str, fresh_db: str) -> None:
    async with stream(base, "rh") as (s, _):
        slow = await psycopg.AsyncConnection.connect(fresh_db)
        try:
            # the slow transaction takes the lower event id but commits last
            await store.apply_finding(slow, finding("p-001", "S1"), T0)
            await apply(fresh_db, finding("p-001", "S2"))
            ident_hi, _, data = await s.next()
            assert data["rule_code"] == "S2"
            await slow.commit()
        finally:
            await slow.close()
        ident_lo, _, data = await s.next(5)
        assert data["rule_code"] == "S1"
        assert ident_lo is not None and ident_hi is not None and ident_lo < ident_hi


async def test_stream_needs_a_principal(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.get("/api/v1/worklist/stream")
        assert r.status_code == 401
        r = await http.get("/api/v1/worklist/stream?after=-1", headers=auth("rh"))
        assert r.status_code in (400, 422)


def test_cursor_remembers_gaps_then_gives_up() -> None:
    c = Cursor(10)
    c.advance([11, 14], now=0.0)
    assert (c.after, sorted(c.missing)) == (14, [12, 13])
    c.advance([13], now=1.0)
    assert sorted(c.missing) == [12]
    c.advance([], now=GAP_WAIT + 1)
    assert (c.after, c.missing) == (14, {})
    c2 = replace(c)
    c2.advance([15, 16], now=0)
    assert c2.missing == {}
