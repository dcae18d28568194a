"""Write back-pressure of the MQTT client against a peer that stops reading: memory stays
bounded (the client's own buffer and asyncio's), ``publish``/``drain`` wait instead of growing,
a peer that reads again releases them, and a peer that goes away while a writer waits ends the
wait with ``ConnectionLost`` — never a hang, never a bare OSError. On MQTT 5 and 3.1.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from wire.mqtt import ConnectionLost, MqttClient, MqttSettings, MqttTimeout
from wire.mqtt._client import COALESCE_BYTES

CONNACK = {"5": b"\x20\x03\x00\x00\x00", "3.1.1": b"\x20\x02\x00\x00"}
PAYLOAD = b"x" * 4096


@dataclass
class StalledBroker:
    """Accepts one client, answers CONNECT with CONNACK, then reads nothing until told."""

    protocol: str
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0
    writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        await reader.read(1024)  # the CONNECT (small: one read)
        writer.write(CONNACK[self.protocol])
        await writer.drain()
        await self.reading.wait()
        while chunk := await reader.read(1 << 20):
            self.received += len(chunk)


@contextlib.asynccontextmanager
async def stalled(protocol: str) -> AsyncIterator[tuple[StalledBroker, MqttClient]]:
    broker = StalledBroker(protocol)
    server = await asyncio.start_server(broker.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = MqttSettings(port=port, protocol=protocol, keepalive=0)  # type: ignore[arg-type]
    client = MqttClient(settings, "bp-test")
    try:
        async with client:
            assert client._proto is not None and client._proto.transport is not None
            sock = client._proto.transport.get_extra_info("socket")
            # small kernel buffers, so the stall shows after kilobytes, not megabytes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            yield broker, client
    except ConnectionLost:
        pass  # the tests that end the connection
    finally:
        server.close()
        broker.reading.set()
        if broker.writer is not None:
            broker.writer.close()
        await server.wait_closed()


def buffered(client: MqttClient) -> int:
    proto = client._proto
    if proto is None or proto.transport is None:
        return 0
    return proto.transport.get_write_buffer_size() + sum(len(b) for b in proto._out)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_qos0_flood_waits_in_drain_with_bounded_memory(protocol: str) -> None:
    async with stalled(protocol) as (broker, client):
        sent, peak = 0, 0
        with pytest.raises(MqttTimeout):
            for _ in range(100_000):  # 400 MB if nothing pushed back
                await client.publish("t/bp", PAYLOAD, qos=0, timeout=0.5)
                sent += 1
                peak = max(peak, buffered(client))
        assert sent < 10_000, "no back-pressure: the writer never waited"
        high = client._proto.transport.get_write_buffer_limits()[1]  # type: ignore[union-attr]
        assert peak <= high + COALESCE_BYTES + len(PAYLOAD) + 64
        # the peer reads again: the writer is released and everything queued arrives
        broker.reading.set()
        await client.drain(timeout=10)
        await client.publish("t/bp", PAYLOAD, qos=0, timeout=10)
        await asyncio.sleep(0.2)
        assert broker.received >= sent * len(PAYLOAD)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_peer_that_leaves_ends_the_wait_with_connection_lost(protocol: str) -> None:
    async with stalled(protocol) as (broker, client):
        with pytest.raises(MqttTimeout):  # until the buffers are full and stay full
            for _ in range(100_000):
                await client.publish("t/bp", PAYLOAD, qos=0, timeout=0.5)
        waiter = asyncio.create_task(client.drain(timeout=30))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        assert broker.writer is not None
        broker.writer.transport.abort()  # the broker goes away (RST)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(waiter, 5)
        with pytest.raises(ConnectionLost):
            await client.publish("t/bp", PAYLOAD, qos=0, timeout=1)
