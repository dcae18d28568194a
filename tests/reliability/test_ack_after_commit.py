"""PUBACK only after commit, proven on a real ingester process: the ingester holds a message whose
batch cannot commit (the readings table is locked), is SIGKILLed, and the broker redelivers the
message to the restarted ingester from its persistent session. Had the ingester acknowledged on
receipt, the message would be gone (the publisher here never re-sends)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.chaos.cluster import Proc
from tests.fixtures.fix_mqtt import Mosquitto
from tests.gateway.ingest_support import HUB, message, prepare_db, reading
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERSISTENT = "allow_anonymous true\npersistence true\npersistence_location {dir}/\n"


def ingester_proc(dsn: str, broker_url: str, client_id: str, log: Path) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHUB_")}
    env.update(
        {
            "TELEHUB_DATABASE_URL": dsn,
            "TELEHUB_MQTT_URL": broker_url,
            "TELEHUB_INGESTER_CLIENT_ID": client_id,
            "TELEHUB_SESSION_EXPIRY": "600",
            "TELEHUB_RECONNECT_MIN": "0.1",
            "TELEHUB_RECONNECT_MAX": "0.5",
            "TELEHUB_DB_TIMEOUT": "60",
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [sys.executable, "-m", "telehub.cli", "--log-level", "INFO", "gateway", "--ingest-only"]
    return Proc("ingester", argv, env, log)


async def wait_for(
    cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s")
        await asyncio.sleep(0.05)


def blocked_on_lock(dsn: str) -> bool:
    """An ingester backend of this database is waiting for a lock."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()
    return row is not None and row[0] > 0


async def test_sigkill_before_commit_means_redelivery_not_loss(
    fresh_db: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto(PERSISTENT)
    prepare_db(fresh_db)
    ing = ingester_proc(
        fresh_db, broker.url, f"ingester-{uuid.uuid4().hex[:6]}", tmp_path / "ingester.log"
    )
    mqtt = MqttSettings.from_url(broker.url)
    readings = [reading(i) for i in range(3)]
    mid, payload = message([*readings])
    try:
        ing.start()
        await wait_for(lambda: ing.log_count("ingester connected") == 1, what="ingester up")
        async with (
            MqttClient(mqtt, f"rcpt-{uuid.uuid4().hex[:6]}", manual_ack=True) as rc,
            MqttClient(mqtt, f"hub-{uuid.uuid4().hex[:6]}") as pub,
        ):
            await rc.subscribe(contract.receipts_topic(HUB), qos=1)
            with psycopg.connect(fresh_db) as locker:
                locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
                await pub.publish(contract.readings_topic(HUB), payload, qos=1)
                await wait_for(lambda: blocked_on_lock(fresh_db), what="batch blocked")
                first_pid = ing.pid
                ing.kill()
                locker.rollback()
            assert await asyncio.to_thread(_rows, fresh_db) == []  # nothing committed
            await asyncio.sleep(0.3)
            assert rc.get_nowait() is None  # and no receipt was sent
            ing.start()
            assert ing.pid != first_pid
            got = await asyncio.wait_for(anext(rc.messages().__aiter__()), 30)
            receipt = contract.decode_receipt(got.payload)
        rows = await asyncio.to_thread(_rows, fresh_db)
    finally:
        ing.close()
    assert receipt == contract.Receipt(msg_id=mid, stored=[r["key"] for r in readings])
    assert rows == [(r["key"],) for r in readings]
    assert ing.log_count("session present: True") == 1  # the restart found its session


def _rows(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT key FROM readings ORDER BY time").fetchall()
