"""PUBACK only after commit: with the database gone, nothing is acknowledged; the broker keeps
the messages in the ingester's persistent session (across a broker restart, with persistence)
and redelivers them; they are stored exactly once when the database is back."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from gateway.ingest import Ingester
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import (
    HUB,
    message,
    prepare_db,
    reading,
    settings_for,
    wait_until,
)
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration

PERSISTENT = "allow_anonymous true\npersistence true\npersistence_location {dir}/\n"


def _set_db_reachable(admin_dsn: str, dbname: str, reachable: bool) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )


@pytest.mark.parametrize(
    ("protocol", "restart_broker"),
    [("5", False), ("5", True), ("3.1.1", True)],
    ids=["mqtt5", "mqtt5-broker-restart", "mqtt311-broker-restart"],
)
async def test_database_outage_acks_nothing_and_redelivery_is_exact(
    fresh_db: str,
    pg_admin_dsn: str,
    mosquitto: MosquittoFactory,
    protocol: str,
    restart_broker: bool,
) -> None:
    broker = mosquitto(PERSISTENT)
    prepare_db(fresh_db)
    dbname = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
    assert isinstance(dbname, str)
    settings = settings_for(fresh_db, broker.url, mqtt_protocol=protocol)
    mqtt = MqttSettings.from_url(broker.url, protocol=protocol)
    ingester = Ingester(settings, migrate_schema=False)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    first, second = [reading(1), reading(2)], [reading(1), reading(3)]
    try:
        await wait_until(lambda: ingester.connected)
        _set_db_reachable(pg_admin_dsn, dbname, False)
        mid1, payload1 = message(first)
        mid2, payload2 = message(second)
        async with MqttClient(mqtt, f"hub-{uuid.uuid4().hex[:6]}") as pub:
            await pub.publish(contract.readings_topic(HUB), payload1, qos=1)
            await wait_until(lambda: ingester.counters.db_errors >= 1)
            await pub.publish(contract.readings_topic(HUB), payload2, qos=1)
        assert ingester.counters.batches == 0
        if restart_broker:
            await asyncio.to_thread(broker.restart)
        async with MqttClient(mqtt, f"rcpt-{uuid.uuid4().hex[:6]}", manual_ack=True) as sub:
            await sub.subscribe(contract.receipts_topic(HUB), qos=1)
            it = sub.messages().__aiter__()
            await asyncio.sleep(0.3)
            assert sub.get_nowait() is None  # nothing stored, so no receipt
            _set_db_reachable(pg_admin_dsn, dbname, True)
            receipts: dict[str, contract.Receipt] = {}
            while len(receipts) < 2:
                m = await asyncio.wait_for(anext(it), 15)
                r = contract.decode_receipt(m.payload)
                receipts[r.msg_id] = r
        with psycopg.connect(fresh_db) as conn:
            rows = conn.execute("SELECT key FROM readings ORDER BY time").fetchall()
    finally:
        _set_db_reachable(pg_admin_dsn, dbname, True)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert rows == [(first[0]["key"],), (first[1]["key"],), (second[1]["key"],)]
    assert receipts == {
        mid1: contract.Receipt(msg_id=mid1, stored=[first[0]["key"], first[1]["key"]]),
        mid2: contract.Receipt(
            msg_id=mid2, stored=[second[1]["key"]], duplicates=[second[0]["key"]]
        ),
    }
    assert ingester.counters.db_errors >= 1
    assert (ingester.counters.stored, ingester.counters.duplicates) == (3, 1)
