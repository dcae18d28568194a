"""The whole gateway in one process: MQTT (real Mosquitto) -> ingester -> PostgreSQL -> alert ->
live stream + on_alert + signed webhook (real HTTP server), and graceful shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.fleet import Token, Webhook
from gateway.ingest import StoredBatch
from gateway.notify.alerts import AlertView
from gateway.notify.webhook import WebhookOptions
from gateway.service import run_gateway
from tests.gateway.api_support import free_socket, receiver, wait_for
from tests.gateway.ingest_support import FLEET, HUB, message, prepare_db, reading, settings_for
from tests.gateway.test_stream_sse import SseClient
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration

TOKEN = "tok-service-rh-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def wait_healthy(http: httpx.AsyncClient) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            try:
                r = await http.get("/health")
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 200:
                body: dict[str, Any] = r.json()
                if body["ingester"]["connected"] and body["stream"]["listening"]:
                    return body
            await asyncio.sleep(0.05)


async def test_reading_to_stream_webhook_and_api_then_graceful_stop(
    fresh_db: str, mqtt_url: str
) -> None:
    stop = asyncio.Event()
    alerts: list[AlertView] = []
    batches: list[StoredBatch] = []
    async with receiver() as rec:
        fleet = FLEET.model_copy(
            update={
                "tokens": [Token(token=TOKEN, org="gp", clinician="Dr. G")],
                "webhooks": [Webhook(org="gp", url=f"{rec.base}/gp", secret="hook-secret")],
            }
        )
        prepare_db(fresh_db, fleet)
        sock = free_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        gateway = asyncio.create_task(
            run_gateway(
                settings_for(fresh_db, mqtt_url),
                stop=stop,
                on_stored=batches.append,
                on_alert=alerts.append,
                webhook=WebhookOptions(poll_interval=1),
                sockets=[sock],
            )
        )
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            health = await wait_healthy(http)
            assert (health["status"], health["ingester"]["stored"]) == ("ok", 0)
            async with http.stream("GET", "/api/v1/alerts/stream", headers=HEADERS) as stream:
                sse = SseClient(stream)
                assert await sse.next_event() == ("ready", {"org_id": "gp", "heartbeat": 15.0})

                mqtt = MqttSettings.from_url(mqtt_url)
                async with MqttClient(mqtt, f"hub-{uuid.uuid4().hex[:8]}") as hub:
                    _, payload = message([reading(1, value="87.0"), reading(2, value="97")])
                    await hub.publish(f"telehub/v1/hubs/{HUB}/readings", payload, qos=1)

                kind, alert = await sse.next_event(timeout=10)
                assert (
                    kind,
                    alert["patient_id"],
                    alert["value"],
                    alert["severity"],
                    alert["status"],
                ) == ("alert", "p1", "87.0", "critical", "open")
                await wait_for(lambda: len(rec.requests) == 1, timeout=10)
                assert [(a.alert_id, a.value) for a in alerts] == [(alert["alert_id"], "87.0")]
                assert [len(b.stored) for b in batches if b.stored] == [2]

                hook = rec.requests[0]
                assert json.loads(hook.body) == {"type": "alert", "alert": alert}
                assert (
                    hook.headers["x-telehub-signature"]
                    == "sha256=" + hmac.new(b"hook-secret", hook.body, hashlib.sha256).hexdigest()
                )

                r = await http.get(
                    "/api/v1/patients/p1/readings",
                    headers=HEADERS,
                    params={"from": (datetime.now(UTC) - timedelta(days=90)).isoformat()},
                )
                assert [x["value"] for x in r.json()["readings"]] == ["97", "87.0"]
                assert (await http.get("/health")).json()["ingester"]["stored"] == 2

                # stop while the live stream is still open: it is closed, everything returns
                stop.set()
                assert await sse.next_event() == ("close", {"reason": "shutdown"})
        async with asyncio.timeout(15):
            await gateway


async def test_a_part_that_fails_to_start_stops_the_others(fresh_db: str, mqtt_url: str) -> None:
    prepare_db(fresh_db)
    taken = free_socket()
    taken.listen()
    try:
        settings = settings_for(fresh_db, mqtt_url, api_port=taken.getsockname()[1])
        async with asyncio.timeout(20):
            with pytest.raises(RuntimeError, match="the API server failed to start"):
                await run_gateway(settings)
    finally:
        taken.close()
