"""The FHIR push channel against a real small FHIR server (uvicorn, written here) that honours
conditional create: retry after a failure, a resend after a lost response, no duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.fhir import mapping as m
from gateway.fhir.push import FhirPushWorker, PushOptions
from gateway.notify.pool import make_pool
from gateway.service import api_server
from tests.gateway.api_support import free_socket, insert_reading, seed, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class FhirServer:
    """Stores resources in memory; ``POST /`` runs a transaction Bundle (PUT by id, POST with
    ``ifNoneExist`` on an identifier). ``fail`` queues behaviours per request: an HTTP status
    answered before processing, or ``("after", status)``: process, then answer with the status
    (a lost response)."""

    fail: list[Any] = field(default_factory=list)
    store: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundles: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    base: str = ""
    next_id: int = 0

    def observations(self) -> list[dict[str, Any]]:
        return [r for k, r in self.store.items() if k.startswith("Observation/")]

    def _find(self, resource_type: str, condition: str) -> str | None:
        name, _, token = condition.partition("=")
        assert name == "identifier"
        system, _, value = token.partition("|")
        for key, res in self.store.items():
            if key.startswith(resource_type + "/") and any(
                i.get("system") == system and i.get("value") == value
                for i in res.get("identifier", [])
            ):
                return key
        return None

    async def handle(self, request: Request) -> Response:
        self.auth.append(request.headers.get("authorization"))
        behaviour = self.fail.pop(0) if self.fail else None
        if isinstance(behaviour, int):
            return Response(status_code=behaviour)
        bundle = await request.json()
        Bundle.model_validate(bundle)
        self.bundles.append(bundle)
        assert bundle["type"] == "transaction"
        out = []
        for e in bundle["entry"]:
            req, res = e["request"], e["resource"]
            if req["method"] == "PUT":
                status = "200 OK" if req["url"] in self.store else "201 Created"
                self.store[req["url"]] = res
                out.append({"response": {"status": status, "location": req["url"]}})
                continue
            assert req["method"] == "POST"
            existing = self._find(req["url"], req["ifNoneExist"])
            if existing is not None:
                out.append({"response": {"status": "200 OK", "location": existing}})
                continue
            self.next_id += 1
            key = f"{req['url']}/{self.next_id}"
            self.store[key] = {**res, "id": str(self.next_id)}
            out.append({"response": {"status": "201 Created", "location": key}})
        if isinstance(behaviour, tuple):
            return Response(status_code=behaviour[1])
        return JSONResponse(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": out},
            media_type="application/fhir+json",
        )


@asynccontextmanager
async def fhir_server(**kwargs: Any) -> AsyncIterator[FhirServer]:
    srv = FhirServer(**kwargs)
    app = Starlette(routes=[Route("/fhir", srv.handle, methods=["POST"])])
    sock = free_socket()
    srv.base = f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    server = api_server(app, graceful_timeout=1)
    task = asyncio.create_task(server.serve_or_raise(sockets=[sock]))
    try:
        await wait_for(lambda: server.started)
        yield srv
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def load(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for i in range(5):
            insert_reading(conn, key=f"spo2-{i}", time=T0 + timedelta(minutes=i), grp=f"g{i}")
        for mdc, v in ((150021, "120"), (150022, "80"), (150023, "93")):
            insert_reading(conn, key=f"bp-{mdc}", time=T0 + timedelta(hours=1), grp="bp",
                           mdc=mdc, unit="mm[Hg]", mdc_unit=266016, value=Decimal(v),
                           panel=150020, loinc=[], hub_id="hub-gp-1", device_id="A&D-UA651",
                           patient_id="p-002")  # fmt: skip
        insert_reading(conn, key="test-1", time=T0 + timedelta(hours=2), grp="t",
                       flags=["data-for-testing"])  # fmt: skip


def outbox(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT grp, attempts, sent_at IS NOT NULL, outcome, last_error FROM fhir_outbox "
            "ORDER BY grp"
        ).fetchall()


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    load(fresh_db)
    return fresh_db


async def run_round(worker: FhirPushWorker, dsn: str) -> Any:
    pool = make_pool(dsn, max_size=2)
    await pool.open()
    try:
        async with worker.make_client() as client:
            return await worker.push_round(pool, client)
    finally:
        await pool.close()


async def test_push_retries_after_failure_and_a_resend_never_duplicates(db: str) -> None:
    async with fhir_server(fail=[503, ("after", 500)]) as srv:
        opts = PushOptions(url=srv.base, token="push-secret", backoff_base=0.2, batch_size=50)
        worker = FhirPushWorker(db, opts)

        # 1. the server is down: nothing sent, every record scheduled for a retry
        first = await run_round(worker, db)
        assert (first.claimed, first.sent, first.failed, first.skipped) == (7, 0, 6, 1)
        assert first.errors == ("HTTP 503",)
        rows = outbox(db)
        assert [r for r in rows if r[0] == "t"] == [("t", 1, True, "skipped-test-data", None)]
        assert {r[1:] for r in rows if r[0] != "t"} == {(1, False, None, "HTTP 503")}
        assert srv.observations() == []
        # not due yet: the backoff holds it back
        assert (await run_round(worker, db)).claimed == 0

        # 2. the server stores the Bundle but the response is lost (500): retried later
        await asyncio.sleep(0.25)
        second = await run_round(worker, db)
        assert (second.sent, second.failed) == (0, 6)
        assert len(srv.observations()) == 6  # 5 SpO2 + one BP panel

        # 3. the resend: conditional create finds every Observation; nothing doubles
        await asyncio.sleep(0.45)
        third = await run_round(worker, db)
        assert (third.sent, third.failed) == (6, 0)
        assert len(srv.observations()) == 6
        assert {r[1:4] for r in outbox(db) if r[0] != "t"} == {(3, True, "sent")}

        # 4. the same records queued again (e.g. the outbox rebuilt): still no duplicates
        with psycopg.connect(db) as conn:
            conn.execute("UPDATE fhir_outbox SET sent_at = NULL, outcome = NULL, "
                         "next_attempt_at = now() "
                         "WHERE outcome = 'sent'")  # fmt: skip
        assert (await run_round(worker, db)).sent == 6
        assert len(srv.observations()) == 6
        assert (await run_round(worker, db)).claimed == 0  # sweep finds nothing new

    assert set(srv.auth) == {"Bearer push-secret"}
    last = srv.bundles[-1]
    posts = [e for e in last["entry"] if e["request"]["method"] == "POST"]
    assert {e["request"]["ifNoneExist"] for e in posts} >= {
        f"identifier={m.KEY_SYSTEM}|spo2-0",
        f"identifier={m.KEY_SYSTEM}|bp-150021",
    }
    puts = sorted(e["request"]["url"] for e in last["entry"] if e["request"]["method"] == "PUT")
    assert sorted(puts) == sorted(
        [
            "Device/" + m.gateway_device_id("hub-gp-1"),
            "Device/" + m.gateway_device_id("hub-rh-1"),
            "Device/" + m.phd_device_id("hub-gp-1", "A&D-UA651"),
            "Device/" + m.phd_device_id("hub-rh-1", "00:1C:05:AA:BB:CC"),
            "Patient/p-001",
            "Patient/p-002",
        ]
    )
    # every Observation's references resolve on the server
    for obs in srv.observations():
        assert obs["subject"]["reference"] in srv.store
        assert obs["device"]["reference"] in srv.store
        assert obs["extension"][0]["valueReference"]["reference"] in srv.store
    # test data never left telehub
    keys = {i["value"] for o in srv.observations() for i in o["identifier"]}
    assert "test-1" not in keys


async def test_new_readings_are_swept_in_later(db: str) -> None:
    async with fhir_server() as srv:
        worker = FhirPushWorker(db, PushOptions(url=srv.base))
        assert (await run_round(worker, db)).sent == 6
        with psycopg.connect(db) as conn:
            insert_reading(conn, key="late-1", time=T0 - timedelta(days=30), grp="late")
        result = await run_round(worker, db)
        assert (result.claimed, result.sent) == (1, 1)
        assert len(srv.observations()) == 7


async def test_a_record_the_server_refuses_does_not_hold_back_the_others(db: str) -> None:
    async with fhir_server(fail=[422, 422]) as srv:
        worker = FhirPushWorker(db, PushOptions(url=srv.base))
        result = await run_round(worker, db)
        # the batch is refused, then retried record by record: the first single one is refused
        assert (result.sent, result.failed) == (5, 1)
        assert len(srv.observations()) == 5


async def test_unreachable_server_is_a_retry(db: str) -> None:
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    sock.close()
    worker = FhirPushWorker(db, PushOptions(url=url, request_timeout=2))
    result = await run_round(worker, db)
    assert (result.sent, result.failed, result.errors) == (0, 6, ("ConnectError",))


async def test_history_before_push_is_backfilled_on_request_in_bounded_windows(db: str) -> None:
    with psycopg.connect(db) as conn:
        # stored two days before the push existed: not queued by default
        insert_reading(conn, key="old-1", time=T0 - timedelta(days=60), grp="old",
                       stored_at=datetime.now(UTC) - timedelta(hours=40))  # fmt: skip
    async with fhir_server() as srv:
        worker = FhirPushWorker(db, PushOptions(url=srv.base))
        assert (await run_round(worker, db)).sent == 6
        assert "old-1" not in {i["value"] for o in srv.observations() for i in o["identifier"]}
        # backfill: move the sweep's start back (docs/fhir.md)
        with psycopg.connect(db) as conn:
            conn.execute("UPDATE fhir_push_state SET swept_to = now() - interval '41 hours'")
        first = await run_round(worker, db)  # 24 one-hour windows: reaches the old reading
        assert (first.claimed, first.sent) == (1, 1)
        with psycopg.connect(db) as conn:
            behind = conn.execute("SELECT now() - swept_to FROM fhir_push_state").fetchone()
        assert behind is not None and timedelta(hours=16) < behind[0] < timedelta(hours=18)
        await run_round(worker, db)  # catches up; the 6 records are found again, not re-sent
        with psycopg.connect(db) as conn:
            behind = conn.execute("SELECT now() - swept_to FROM fhir_push_state").fetchone()
        assert behind is not None and behind[0] < timedelta(minutes=1)
        assert len(srv.observations()) == 7


async def test_the_worker_loop_pushes_and_stops(db: str) -> None:
    async with fhir_server(fail=[503]) as srv:
        worker = FhirPushWorker(db, PushOptions(url=srv.base, interval=0.1, backoff_base=0.1))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(lambda: len(srv.observations()) == 6, timeout=10)
            with psycopg.connect(db) as conn:
                insert_reading(conn, key="live-1", time=T0 + timedelta(days=1), grp="live")
            await wait_for(lambda: len(srv.observations()) == 7, timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert worker.stats.records_sent == 7
    assert worker.stats.records_failed == 6  # the first round's 503
