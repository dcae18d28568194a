"""wire.mqtt against a scripted fake broker (malformed and limit-violating packets) and against a
real Mosquitto (keep-alive with the broker stopped and with a slow consumer, restart with
persistence and redelivery), each on MQTT 5 and 3.1.1."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import pytest

from wire.mqtt import (
    ConnectionLost,
    ConnectRefused,
    Message,
    MqttClient,
    MqttError,
    MqttSettings,
    MqttTimeout,
    ProtocolError,
    PublishRefused,
)
from wire.mqtt import _codec as codec

PROTOCOLS = pytest.mark.parametrize("protocol", ["5", "3.1.1"])

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_packet(r: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await r.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await r.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    return first, await r.readexactly(n)


def connack(v5: bool, props: bytes = b"", code: int = 0) -> bytes:
    body = bytes((0, code)) + ((codec.varint(len(props)) + props) if v5 else b"")
    return codec.packet(0x20, body)


class FakeBroker:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.server: asyncio.Server | None = None
        self.received: list[tuple[int, bytes]] = []

    async def __aenter__(self) -> FakeBroker:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await self.script(r, w)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def settings(self, protocol: str, keepalive: int = 30) -> MqttSettings:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return MqttSettings(port=port, protocol=protocol, keepalive=keepalive)  # type: ignore[arg-type]


def after_connect(v5: bool, send: bytes, props: bytes = b"", hold: float = 30.0) -> Script:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_packet(r)
        w.write(connack(v5, props) + send)
        await w.drain()
        await asyncio.sleep(hold)

    return script


@PROTOCOLS
async def test_connect_refused_carries_its_code(protocol: str) -> None:
    v5 = protocol == "5"

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_packet(r)
        w.write(connack(v5, code=0x86 if v5 else 4))
        await w.drain()

    async with FakeBroker(script) as fb:
        with pytest.raises(ConnectRefused) as info:
            await MqttClient(fb.settings(protocol), "c").connect()
    assert info.value.code == (0x86 if v5 else 4)


async def test_malformed_connack_properties_are_a_protocol_error() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_packet(r)
        w.write(b"\x20\x05\x00\x00\x03\x27\x00\x01")  # Maximum Packet Size truncated
        await w.drain()
        await asyncio.sleep(5)

    async with FakeBroker(script) as fb:
        with pytest.raises(ProtocolError):
            await MqttClient(fb.settings("5"), "c").connect()


async def test_our_connect_announces_a_maximum_packet_size() -> None:
    got: list[bytes] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append((await read_packet(r))[1])
        w.write(connack(True))
        await w.drain()
        await asyncio.sleep(5)

    async with FakeBroker(script) as fb:
        c = MqttClient(fb.settings("5"), "c", max_packet_size=4096)
        await c.connect()
        await c.disconnect()
    props, _ = codec.properties(got[0], 10)
    assert props[codec.MAXIMUM_PACKET_SIZE] == 4096


@PROTOCOLS
async def test_an_oversized_publish_ends_the_connection_from_its_header(protocol: str) -> None:
    v5 = protocol == "5"
    header = b"\x30" + codec.varint(64 << 20)  # a 64 MiB PUBLISH announced; body never sent
    async with FakeBroker(after_connect(v5, header)) as fb:
        c = MqttClient(fb.settings(protocol), "c", max_packet_size=1 << 20)
        await c.connect()
        t0 = time.monotonic()
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(c.wait_disconnected(), 5)
        assert time.monotonic() - t0 < 1.0
        await c.disconnect()


@PROTOCOLS
async def test_an_inbound_qos_2_publish_is_a_protocol_error(protocol: str) -> None:
    v5 = protocol == "5"
    pub = codec.publish("a/b", b"x", 2, False, 7, v5=v5)
    async with FakeBroker(after_connect(v5, pub)) as fb:
        c = MqttClient(fb.settings(protocol), "c", manual_ack=True)
        await c.connect()
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(c.wait_disconnected(), 5)
        assert c.get_nowait() is None
        await c.disconnect()


@PROTOCOLS
async def test_a_suback_granting_a_lower_qos_is_refused(protocol: str) -> None:
    v5 = protocol == "5"

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_packet(r)
        w.write(connack(v5))
        _, body = await read_packet(r)  # SUBSCRIBE
        w.write(codec.packet(0x90, body[:2] + (b"\x00" if v5 else b"") + b"\x00"))  # QoS 0
        await w.drain()
        await asyncio.sleep(5)

    async with FakeBroker(script) as fb:
        c = MqttClient(fb.settings(protocol), "c")
        await c.connect()
        with pytest.raises(PublishRefused) as info:
            await c.subscribe("a/#", qos=1, timeout=5)
        assert info.value.code == 0
        await c.disconnect()


async def test_connack_limits_are_honoured() -> None:
    props = b"\x27\x00\x00\x00\x40" + b"\x24\x00" + b"\x25\x00" + b"\x12\x00\x03abc"
    async with FakeBroker(after_connect(True, b"", props)) as fb:
        c = MqttClient(fb.settings("5"), "")
        await c.connect()
        assert c.client_id == "abc"
        with pytest.raises(PublishRefused):  # over the Maximum Packet Size of 64
            await c.publish("a/b", b"x" * 100, qos=0)
        with pytest.raises(PublishRefused):  # Maximum QoS 0
            await c.publish("a/b", b"x", qos=1)
        with pytest.raises(PublishRefused):  # Retain not available
            await c.publish("a/b", b"x", qos=0, retain=True)
        with pytest.raises(PublishRefused):
            await c.publish_many([("a/b", b"x")])
        await c.publish("a/b", b"x", qos=0)
        await c.disconnect()


@PROTOCOLS
@pytest.mark.parametrize("topic", ["a/+", "a/#", "", "a\x00b", "a/\ud800", "t" * 65536])
async def test_invalid_outgoing_topics_are_refused(protocol: str, topic: str) -> None:
    async with FakeBroker(after_connect(protocol == "5", b"")) as fb:
        c = MqttClient(fb.settings(protocol), "c")
        await c.connect()
        with pytest.raises(PublishRefused):
            await c.publish(topic, b"x", qos=0)
        with pytest.raises(PublishRefused):
            await c.publish_nowait(topic, b"x", qos=1)
        assert c.is_connected
        await c.disconnect()


@PROTOCOLS
async def test_a_silent_broker_is_detected_while_we_publish(protocol: str) -> None:
    # The broker reads everything and answers nothing (no PINGRESP): found in ~1.5 x keepalive
    # even though we keep sending (PINGREQ on receive-silence, not only on send-silence).
    v5 = protocol == "5"

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_packet(r)
        w.write(connack(v5))
        await w.drain()
        while True:
            await read_packet(r)

    async with FakeBroker(script) as fb:
        c = MqttClient(fb.settings(protocol, keepalive=2), "c")
        await c.connect()
        t0 = time.monotonic()
        with pytest.raises(MqttTimeout):
            while True:
                await c.publish("a/b", b"x", qos=0)
                await asyncio.sleep(0.05)
                if not c.is_connected:
                    await c.wait_disconnected()
        assert time.monotonic() - t0 < 2 * 1.5 + 0.6
        await c.disconnect()


@PROTOCOLS
async def test_unacknowledged_publishes_are_resent_with_dup_on_session_resume(
    protocol: str,
) -> None:
    v5 = protocol == "5"
    seen: list[tuple[int, bytes]] = []
    connections = 0

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_packet(r)
        if connections == 1:
            w.write(connack(v5))
            await w.drain()
            seen.append(await read_packet(r))
            seen.append(await read_packet(r))
            return  # connection dropped: no PUBACKs
        w.write(codec.packet(0x20, b"\x01\x00" + (b"\x00" if v5 else b"")))  # session present
        await w.drain()
        for _ in range(2):
            first, body = await read_packet(r)
            seen.append((first, body))
            w.write(codec.puback(int.from_bytes(body[5:7], "big")))  # after topic "a/b"
        await w.drain()
        await asyncio.sleep(5)

    async with FakeBroker(script) as fb:
        c = MqttClient(
            fb.settings(protocol), "c", clean_start=False, session_expiry=60, resend_unacked=True
        )
        await c.connect()
        futs = [c.publish_nowait("a/b", b"1"), c.publish_nowait("a/b", b"2")]
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(c.wait_disconnected(), 5)
        assert not any(f.done() for f in futs)
        await c.connect()
        assert c.session_present
        await asyncio.wait_for(asyncio.gather(*futs), 5)
        await c.disconnect()
    assert [f for f, _ in seen] == [0x32, 0x32, 0x3A, 0x3A]  # QoS 1, then QoS 1 + DUP
    assert [b for _, b in seen[:2]] == [b for _, b in seen[2:]]  # same ids, same payloads


async def test_without_session_resume_unacknowledged_publishes_fail() -> None:
    connections = 0

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_packet(r)
        w.write(connack(True))
        await w.drain()
        if connections == 1:
            await read_packet(r)
            return
        await asyncio.sleep(5)

    async with FakeBroker(script) as fb:
        c = MqttClient(
            fb.settings("5"), "c", clean_start=False, session_expiry=60, resend_unacked=True
        )
        await c.connect()
        fut = c.publish_nowait("a/b", b"1")
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(c.wait_disconnected(), 5)
        await c.connect()
        assert not c.session_present
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(fut, 5)
        await c.disconnect()


# -- against a real Mosquitto ---------------------------------------------------------------------
async def _collect(client: MqttClient, n: int, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for m in client.messages():
            got.append(m)
            client.ack(m)
            if len(got) == n:
                return got
    raise AssertionError("unreachable")


@pytest.mark.integration
@PROTOCOLS
async def test_a_sigstopped_mosquitto_is_detected_while_publishing(mosquitto, protocol) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto()
    s = MqttSettings.from_url(broker.url, protocol=protocol, keepalive=2)
    c = MqttClient(s, "pub")
    await c.connect()
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(MqttError):
            while c.is_connected:
                c.publish_nowait("a/b", b"x", qos=0)
                await asyncio.sleep(0.05)
            await c.wait_disconnected()
        elapsed = time.monotonic() - t0
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    assert elapsed < 2 * 1.5 + 0.6
    await c.disconnect()


@pytest.mark.integration
@PROTOCOLS
async def test_a_slow_consumer_does_not_time_out_a_healthy_broker(mosquitto, protocol) -> None:  # type: ignore[no-untyped-def]
    # The consumer's queue is full (socket paused) for 3 keep-alive periods: its PINGREQ must
    # still get its PINGRESP read, and nothing may be lost.
    s = MqttSettings.from_url(mosquitto().url, protocol=protocol, keepalive=2)
    async with (
        MqttClient(s, "slow", manual_ack=True, receive_maximum=20, queue_size=10) as slow,
        MqttClient(s, "hub") as hub,
    ):
        await slow.subscribe("s/#", qos=1)
        for i in range(100):
            await hub.publish("s/x", str(i).encode())
        await asyncio.sleep(6.5)
        assert slow.is_connected
        got = await _collect(slow, 100)
    assert [m.payload for m in got] == [str(i).encode() for i in range(100)]


@pytest.mark.integration
@PROTOCOLS
async def test_restart_with_persistence_redelivers_unacknowledged(mosquitto, protocol) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto("allow_anonymous true\npersistence true\npersistence_location {dir}/\n")
    s = MqttSettings.from_url(broker.url, protocol=protocol)

    def consumer() -> MqttClient:
        return MqttClient(s, "durable", clean_start=False, session_expiry=600, manual_ack=True)

    async with consumer() as c:
        await c.subscribe("p/#", qos=1)
        async with MqttClient(s, "hub") as hub:
            for i in range(20):
                await hub.publish("p/x", str(i).encode())
        first = await _collect_no_ack(c, 20)
    assert len(first) == 20
    broker.restart()  # SIGTERM: persistence written
    async with consumer() as c:
        assert c.session_present
        again = await _collect(c, 20)
    assert [m.payload for m in again] == [str(i).encode() for i in range(20)]
    assert all(m.qos == 1 for m in again)


async def _collect_no_ack(client: MqttClient, n: int) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(10):
        async for m in client.messages():
            got.append(m)
            if len(got) == n:
                return got
    raise AssertionError("unreachable")


async def test_not_connected_is_connection_lost() -> None:
    async with FakeBroker(after_connect(True, b"", hold=0.1)) as fb:
        c = MqttClient(fb.settings("5"), "c")
        await c.connect()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(c.wait_disconnected(), 5)
        with pytest.raises(ConnectionLost):
            await c.publish("a/b", b"x")
        await c.disconnect()
