"""Shared helpers for the edge tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from wire import contract
from wire.mqtt import MqttClient, MqttSettings

T0 = datetime(2024, 5, 17, 12, 0, 0, tzinfo=UTC)


def reading(
    key: str, kind: str = "spot", *, device: str = "AA:BB:CC:DD:EE:01", value: str = "120"
) -> contract.Reading:
    return contract.Reading(
        key=key,
        device=device,
        patient="patient-a",
        source="2a35",
        kind=kind,
        mdc=150021,
        loinc=["8480-6"],
        unit="mm[Hg]",
        mdc_unit=266016,
        value=value,
        group="g-" + key,
        time=T0,
        time_source="device",
        received_at=T0,
        raw="00",
    )


# -- MQTT helpers ---------------------------------------------------------------------------------
class FakeGateway:
    """Stands in for the ingester: receives ReadingsMessages and answers with Receipts.

    ``auto`` receipts every message as stored at once; otherwise the test calls :meth:`receipt`.
    """

    def __init__(self, url: str, hub: str, *, auto: bool = True, protocol: str = "5") -> None:
        self.hub = hub
        self.auto = auto
        self.client = MqttClient(
            MqttSettings.from_url(url, protocol=protocol), f"fake-gw-{uuid.uuid4().hex[:8]}"
        )
        self.messages: asyncio.Queue[contract.ReadingsMessage] = asyncio.Queue()
        self.received: list[contract.ReadingsMessage] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeGateway:
        await self.client.connect()
        await self.client.subscribe(contract.readings_topic(self.hub), qos=1)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self.client.disconnect()

    async def _run(self) -> None:
        async for m in self.client.messages():
            msg = contract.decode_message(m.payload)
            self.received.append(msg)
            await self.messages.put(msg)
            if self.auto:
                await self.receipt(msg)

    async def next(self, timeout: float = 10.0) -> contract.ReadingsMessage:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def receipt(
        self,
        msg: contract.ReadingsMessage,
        *,
        stored: Iterable[str] | None = None,
        duplicates: Iterable[str] = (),
        rejected: Iterable[tuple[str | None, str]] = (),
    ) -> None:
        keys = keys_of(msg)
        r = contract.Receipt(
            msg_id=msg.msg_id,
            stored=list(keys if stored is None else stored),
            duplicates=list(duplicates),
            rejected=[contract.Rejection(k, why) for k, why in rejected],
        )
        await self.client.publish(contract.receipts_topic(self.hub), contract.encode(r), qos=1)


def keys_of(msg: contract.ReadingsMessage) -> list[str]:
    return [contract.decode_reading(r).key for r in msg.readings]


class TcpProxy:
    """A TCP relay the test can cut abruptly (no MQTT DISCONNECT: the broker fires the will)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 1883)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.transport.abort()
            return
        self._writers += [w, uw]
        for src, dst in ((r, uw), (ur, w)):
            t = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    def cut(self) -> None:
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
