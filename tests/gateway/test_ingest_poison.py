"""A message the database refuses (past validation) is isolated: the rest of its batch is stored
and the message itself is dead-lettered whole, so it cannot block the stream."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from gateway.ingest import Ingester
from gateway.ingest.store import prepare_session
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import HUB, message, prepare_db, reading, settings_for
from wire import contract
from wire.mqtt import Message, MqttClient, MqttSettings

pytestmark = pytest.mark.integration

# valid for the HubStatus schema (unknown fields are allowed), but jsonb cannot hold the number
POISON = (
    b'{"v":1,"hub":"' + HUB.encode() + b'","state":"online",'
    b'"at":"2024-01-01T00:00:00Z","extra":1e200000}'
)


def _msg(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, qos=0, retain=False, mid=0)  # qos 0: ack() is a no-op


async def test_poison_message_is_isolated_from_its_batch(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    prepare_db(fresh_db)
    ingester = Ingester(settings_for(fresh_db, broker.url), migrate_schema=False)
    a, b = reading(1), reading(2)
    _, pa = message([a])
    _, pb = message([b])
    conn: psycopg.AsyncConnection[Any]
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
        await prepare_session(conn)
        await ingester.cache.load(conn)
        async with MqttClient(MqttSettings.from_url(broker.url), "t-poison") as mqtt:
            batch = await ingester.process(
                conn,
                mqtt,
                [
                    _msg(contract.readings_topic(HUB), pa),
                    _msg(contract.status_topic(HUB), POISON),
                    _msg(contract.readings_topic(HUB), pb),
                ],
            )
        cur = await conn.execute("SELECT key FROM readings ORDER BY time")
        stored = await cur.fetchall()
        cur = await conn.execute("SELECT hub_id, topic, reason, payload FROM dead_letters")
        dead = await cur.fetchall()
        cur = await conn.execute("SELECT state FROM hubs WHERE hub_id = %s", (HUB,))
        state = await cur.fetchall()
    assert stored == [(a["key"],), (b["key"],)]
    assert [r.key for r in batch.stored] == [a["key"], b["key"]]
    assert dead == [
        (
            HUB,
            contract.status_topic(HUB),
            "storage: the database refused this message (22003: value overflows numeric format)",
            POISON,
        )
    ]
    assert state == [("unknown",)]
    assert (ingester.counters.poison_messages, ingester.counters.rejected) == (1, 1)
