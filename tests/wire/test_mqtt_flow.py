"""wire.mqtt against a real Mosquitto: flow control in both directions, batched publishes,
large packets, refusals and a lost connection."""

from __future__ import annotations

import asyncio

import pytest

from wire.mqtt import Message, MqttClient, MqttError, MqttSettings

pytestmark = pytest.mark.integration


async def _collect(client: MqttClient, n: int, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for m in client.messages():
            got.append(m)
            client.ack(m)
            if len(got) == n:
                return got
    raise AssertionError("unreachable")


async def test_publish_completes_while_the_inbound_queue_is_over_its_limit(mosquitto) -> None:  # type: ignore[no-untyped-def]
    # The consumer has stopped reading (50 unacknowledged messages on the wire, room for 10 in
    # its queue) and waits for the PUBACK of its own publish, which is behind those messages:
    # the socket must be read anyway, or neither side ever moves (the ingester's receipts).
    s = MqttSettings.from_url(mosquitto().url)
    async with (
        MqttClient(s, "consumer", manual_ack=True, receive_maximum=50, queue_size=10) as consumer,
        MqttClient(s, "hub") as hub,
    ):
        await consumer.subscribe("in/#", qos=1)
        for i in range(50):
            await hub.publish("in/x", str(i).encode())
        await asyncio.sleep(0.3)
        await consumer.publish("out/receipt", b"r", timeout=5.0)
        got = await _collect(consumer, 50)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("in/x", str(i).encode(), 1) for i in range(50)
    ]


async def test_publish_many_keeps_order_beyond_the_in_flight_window(mosquitto) -> None:  # type: ignore[no-untyped-def]
    s = MqttSettings.from_url(mosquitto().url)
    async with (
        MqttClient(s, "sub", manual_ack=True, receive_maximum=500) as sub,
        MqttClient(s, "pub", max_inflight=7) as pub,
    ):
        await sub.subscribe("r/#", qos=1)
        done = pub.publish_many([(f"r/{i % 3}", f"{i}".encode()) for i in range(300)])
        await asyncio.wait_for(done, 10)
        assert done.done() and done.exception() is None
        got = await _collect(sub, 300)
        empty = pub.publish_many([])
        await asyncio.wait_for(empty, 1)
    assert [(m.topic, m.payload) for m in got] == [
        (f"r/{i % 3}", f"{i}".encode()) for i in range(300)
    ]
    assert empty.done() and empty.exception() is None


async def test_the_brokers_receive_maximum_caps_the_window(mosquitto) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto("allow_anonymous true\nmax_inflight_messages 3\n")
    s = MqttSettings.from_url(broker.url)
    async with (
        MqttClient(s, "sub", manual_ack=True) as sub,
        MqttClient(s, "pub", max_inflight=100) as pub,
    ):
        await sub.subscribe("w/#", qos=1)
        futures = [pub.publish_nowait("w/x", bytes([i])) for i in range(40)]
        in_flight = len(pub._pending_pub) - len(pub._backlog)
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        got = await _collect(sub, 40)
    assert in_flight == 3
    assert [m.payload for m in got] == [bytes([i]) for i in range(40)]


async def test_payloads_split_over_many_reads_arrive_whole(mosquitto) -> None:  # type: ignore[no-untyped-def]
    s = MqttSettings.from_url(mosquitto().url, protocol="3.1.1")
    big = bytes(range(256)) * 1000  # 256 kB: a 3-byte remaining length, many TCP reads
    async with MqttClient(s, "sub", manual_ack=True) as sub, MqttClient(s, "pub") as pub:
        await sub.subscribe("big/#", qos=1)
        await pub.publish("big/1", big)
        await pub.publish("big/2", b"", qos=0)
        got = await _collect(sub, 2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [("big/1", big, 1), ("big/2", b"", 0)]


async def test_qos_2_is_refused_and_a_lost_connection_ends_everything(mosquitto) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto()
    s = MqttSettings.from_url(broker.url)
    client = MqttClient(s, "c", manual_ack=True)
    await client.connect()
    with pytest.raises(MqttError, match="QoS 2"):
        await client.publish("q/x", b"x", qos=2)
    with pytest.raises(MqttError, match="QoS 2"):
        await client.subscribe("q/#", qos=2)
    await client.subscribe("q/#", qos=1)
    broker.kill()
    with pytest.raises(MqttError, match="connection lost"):
        await asyncio.wait_for(client.wait_disconnected(), 5)
    assert not client.is_connected
    failed = client.publish_nowait("q/x", b"x")
    with pytest.raises(MqttError, match="not connected"):
        await failed
    with pytest.raises(MqttError):
        await anext(aiter(client.messages()))
    await client.disconnect()
