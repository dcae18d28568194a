"""A3: a hub not heard for longer than ``silent_after`` raises one live hub-silent technical
alert, for its organisation's operators only; heard again, the alert resolves by itself; silent
again, a new one is raised. A hub never heard is not silent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from gateway.api import create_app
from gateway.notify.hub_silence import HubSilenceWatch, SweepResult, sweep
from tests.gateway.api_support import api_client, auth, seed

pytestmark = pytest.mark.integration

AFTER = timedelta(seconds=150)
NOW = datetime(2026, 3, 29, 1, 59, tzinfo=UTC)  # the night of the spring DST change in Denmark


def _seen(dsn: str, hub: str, at: datetime | None) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE hubs SET last_seen = %s WHERE hub_id = %s", (at, hub))


def _alerts(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT hub_id, kind, state, first_at, last_at, resolved_by FROM technical_alerts "
            "ORDER BY alert_id"
        ).fetchall()


async def _sweep(dsn: str, now: datetime) -> SweepResult:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await sweep(conn, now, AFTER)


async def test_silent_hubs_raise_one_alert_that_resolves_when_heard(fresh_db: str) -> None:
    seed(fresh_db)  # hubs hub-rh-1 (org rh) and hub-gp-1 (org gp), never heard
    assert await _sweep(fresh_db, NOW) == SweepResult((), ())
    quiet = NOW - AFTER - timedelta(seconds=1)
    _seen(fresh_db, "hub-rh-1", quiet)
    _seen(fresh_db, "hub-gp-1", NOW - AFTER)  # exactly at the limit: not silent yet
    assert await _sweep(fresh_db, NOW) == SweepResult(("hub-rh-1",), ())
    later = NOW + timedelta(minutes=5)
    assert await _sweep(fresh_db, later) == SweepResult(("hub-gp-1",), ())  # one alert each
    assert _alerts(fresh_db) == [
        ("hub-rh-1", "hub-silent", "open", quiet, later, None),
        ("hub-gp-1", "hub-silent", "open", NOW - AFTER, later, None),
    ]
    # only the hub organisation's operators see it
    async with api_client(create_app(fresh_db)) as c:
        r = await c.get("/api/v1/technical-alerts", headers=auth("rh-ops"))
        assert [(a["hub_id"], a["kind"]) for a in r.json()["technical_alerts"]] == [
            ("hub-rh-1", "hub-silent")
        ]
    # heard again: resolved by the gateway, not by a clinician
    _seen(fresh_db, "hub-rh-1", later)
    assert await _sweep(fresh_db, later + timedelta(seconds=10)) == SweepResult((), ("hub-rh-1",))
    # silent again: a new alert, the resolved one stays as it was
    again = later + AFTER + timedelta(minutes=1)
    assert await _sweep(fresh_db, again) == SweepResult(("hub-rh-1",), ())
    rows = [(h, s, by) for h, _, s, _, _, by in _alerts(fresh_db) if h == "hub-rh-1"]
    assert rows == [("hub-rh-1", "resolved", "telehub"), ("hub-rh-1", "open", None)]


async def test_the_watch_sweeps_until_stopped(fresh_db: str) -> None:
    seed(fresh_db)
    _seen(fresh_db, "hub-rh-1", datetime.now(UTC) - timedelta(hours=1))
    watch = HubSilenceWatch(fresh_db, silent_after=AFTER, interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(watch.run(stop))
    async with asyncio.timeout(10):
        while watch.sweeps < 3:
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [(h, s) for h, _, s, *_ in _alerts(fresh_db)] == [("hub-rh-1", "open")]


async def test_an_unreachable_database_is_retried_not_fatal() -> None:
    watch = HubSilenceWatch("postgresql://nobody@127.0.0.1:1/none", interval=0.05, db_timeout=1)
    stop = asyncio.Event()
    task = asyncio.create_task(watch.run(stop))
    await asyncio.sleep(0.3)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert watch.sweeps == 0
