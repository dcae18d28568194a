import psycopg

from wire.mqtt import MqttClient, MqttSettings


def test_fresh_db_is_empty_and_writable(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (1)")
        assert conn.execute("select count(*) from t").fetchone() == (1,)


async def test_private_broker_roundtrip(mosquitto) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto()
    s = MqttSettings.from_url(broker.url)
    async with MqttClient(s, "sub", manual_ack=True) as sub:
        await sub.subscribe("a/#")
        async with MqttClient(s, "pub") as pub:
            await pub.publish("a/b", b"x")
        msg = await anext(aiter(sub.messages()))
        assert (msg.topic, msg.payload) == ("a/b", b"x")
        sub.ack(msg)
