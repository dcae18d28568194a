"""The bleak adapter through injected fake scanner/client classes (no BlueZ here)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from bleak.exc import BleakError

from edge.ble.bleak_transport import BleakTransport
from edge.ble.transport import Advertisement, BleLink, BleTransport, TransportError, uuid16

HR = uuid16(0x2A37)
RACP = uuid16(0x2A52)


@dataclass
class FakeDevice:
    address: str
    name: str | None


@dataclass
class FakeAdv:
    local_name: str | None
    service_uuids: list[str]
    rssi: int
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)


@dataclass
class FakeChar:
    uuid: str


@dataclass
class FakeService:
    uuid: str
    characteristics: list[FakeChar]


class FakeScanner:
    result: dict[str, tuple[FakeDevice, FakeAdv]] = {}
    calls: list[dict[str, Any]] = []

    @classmethod
    async def discover(cls, timeout: float, return_adv: bool, **kw: Any) -> Any:
        cls.calls.append({"timeout": timeout, "return_adv": return_adv, **kw})
        return cls.result


class FakeClient:
    instances: list[FakeClient] = []
    fail_connect: Exception | None = None
    connect_delay = 0.0

    def __init__(
        self,
        target: Any,
        disconnected_callback: Callable[[Any], None] | None = None,
        timeout: float = 30,
        **kw: Any,
    ) -> None:
        self.target = target
        self.cb = disconnected_callback
        self.kw = kw
        self.is_connected = False
        self.callbacks: dict[str, Callable[[Any, bytearray], None]] = {}
        self.writes: list[tuple[str, bytes, bool]] = []
        self.disconnects = 0
        self.read_value: bytes | Exception = b"\x55"
        self.read_delay = 0.0
        self.services = [
            FakeService(uuid16(0x180D), [FakeChar(HR)]),
            FakeService(uuid16(0x1808), [FakeChar(RACP), FakeChar(uuid16(0x2A18))]),
        ]
        FakeClient.instances.append(self)

    async def connect(self) -> None:
        await asyncio.sleep(self.connect_delay)
        if FakeClient.fail_connect is not None:
            raise FakeClient.fail_connect
        self.is_connected = True

    async def disconnect(self) -> None:
        self.disconnects += 1
        if self.is_connected:
            self.is_connected = False
            if self.cb is not None:
                self.cb(self)

    async def read_gatt_char(self, uuid: str) -> bytearray:
        await asyncio.sleep(self.read_delay)
        if isinstance(self.read_value, Exception):
            raise self.read_value
        return bytearray(self.read_value)

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool) -> None:
        self.writes.append((uuid, bytes(data), response))

    async def start_notify(self, uuid: str, cb: Callable[[Any, bytearray], None]) -> None:
        if uuid not in (HR, RACP):
            raise BleakError(f"characteristic {uuid} cannot notify")
        self.callbacks[uuid] = cb

    async def stop_notify(self, uuid: str) -> None:
        self.callbacks.pop(uuid)


@pytest.fixture(autouse=True)
def _reset() -> None:
    FakeScanner.result = {}
    FakeScanner.calls = []
    FakeClient.instances = []
    FakeClient.fail_connect = None
    FakeClient.connect_delay = 0.0


def transport(**kw: Any) -> BleakTransport:
    return BleakTransport(scanner_cls=FakeScanner, client_cls=FakeClient, **kw)


def test_implements_the_seam() -> None:
    t = transport()
    assert isinstance(t, BleTransport)
    assert isinstance(t.link("AA:BB:CC:DD:EE:FF"), BleLink)


async def test_scan_maps_advertisements_and_links_use_the_scanned_device() -> None:
    dev = FakeDevice("aa:bb:cc:dd:ee:01", "A&D_UA-651BLE")
    FakeScanner.result = {
        "aa:bb:cc:dd:ee:01": (
            dev,
            FakeAdv(None, ["00001810-0000-1000-8000-00805F9B34FB"], -55, {0x0105: b"\x01"}),
        ),
    }
    t = transport(adapter="hci1")
    assert await t.scan(2.0) == [
        Advertisement(
            address="AA:BB:CC:DD:EE:01",
            name="A&D_UA-651BLE",
            service_uuids=(uuid16(0x1810),),
            rssi=-55,
            manufacturer_data={0x0105: b"\x01"},
        ),
    ]
    assert FakeScanner.calls == [{"timeout": 2.0, "return_adv": True, "bluez": {"adapter": "hci1"}}]
    link = t.link("aa:bb:cc:dd:ee:01")
    await link.connect(1.0)
    assert FakeClient.instances[0].target is dev  # the BLEDevice, not the bare address
    assert FakeClient.instances[0].kw == {"bluez": {"adapter": "hci1"}}
    assert link.is_connected and link.address == "AA:BB:CC:DD:EE:01"
    assert await link.services() == [uuid16(0x180D), uuid16(0x1808)]
    assert await link.characteristics() == [HR, RACP, uuid16(0x2A18)]


async def test_scan_errors_become_transport_errors() -> None:
    class Broken:
        @classmethod
        async def discover(cls, **kw: Any) -> Any:
            raise BleakError("adapter powered off")

    with pytest.raises(TransportError, match="adapter powered off"):
        await BleakTransport(scanner_cls=Broken, client_cls=FakeClient).scan(1.0)


async def test_missing_bluez_is_named() -> None:
    class NoBus(FakeScanner):
        @classmethod
        async def discover(cls, timeout: float, return_adv: bool, **kw: Any) -> Any:
            raise FileNotFoundError(2, "No such file or directory")

    t = BleakTransport(scanner_cls=NoBus, client_cls=FakeClient)
    with pytest.raises(TransportError, match=r"BlueZ is not reachable.*apt-get install bluez"):
        await t.scan(0.1)


async def test_connect_failures() -> None:
    FakeClient.fail_connect = BleakError("le-connection-abort-by-local")
    with pytest.raises(TransportError, match="connect failed"):
        await transport().link("AA:BB:CC:DD:EE:02").connect(1.0)
    FakeClient.fail_connect = None
    FakeClient.connect_delay = 5.0
    with pytest.raises(TransportError, match="timed out"):
        await transport().link("AA:BB:CC:DD:EE:02").connect(0.05)


async def test_read_write_and_errors() -> None:
    link = transport().link("AA:BB:CC:DD:EE:03")
    with pytest.raises(TransportError, match="not connected"):
        await link.read(HR, 1.0)
    await link.connect(1.0)
    client = FakeClient.instances[0]
    assert await link.read(HR, 1.0) == b"\x55"
    await link.write(RACP, b"\x01\x01", response=True, timeout=1.0)
    assert client.writes == [(RACP, b"\x01\x01", True)]
    client.read_value = BleakError("ATT error 0x02")
    with pytest.raises(TransportError, match="ATT error 0x02"):
        await link.read(HR, 1.0)
    client.read_value = b"\x01"
    client.read_delay = 5.0
    with pytest.raises(TransportError, match="timed out"):
        await link.read(HR, 0.05)
    with pytest.raises(TransportError, match="cannot notify"):
        await link.start_notify(uuid16(0x2A18), _noop)


async def _noop(data: bytes) -> None:
    return None


async def test_notifications_handled_one_at_a_time_in_arrival_order() -> None:
    link = transport().link("AA:BB:CC:DD:EE:04")
    await link.connect(1.0)
    client = FakeClient.instances[0]
    seen: list[tuple[str, bytes]] = []
    running = 0
    peak = 0

    def handler(name: str) -> Callable[[bytes], Any]:
        async def h(data: bytes) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            seen.append((name, data))
            running -= 1

        return h

    await link.start_notify(HR, handler("hr"))
    await link.start_notify(RACP, handler("racp"))
    # bleak calls back synchronously from its D-Bus handler, in arrival order
    client.callbacks[HR](None, bytearray(b"\x01"))
    client.callbacks[RACP](None, bytearray(b"\x06\x00\x01\x01"))
    client.callbacks[HR](None, bytearray(b"\x02"))
    async with asyncio.timeout(2):
        while len(seen) < 3:
            await asyncio.sleep(0.01)
    assert seen == [("hr", b"\x01"), ("racp", b"\x06\x00\x01\x01"), ("hr", b"\x02")]
    assert peak == 1
    await link.stop_notify(HR)
    assert list(client.callbacks) == [RACP]
    await link.disconnect()
    assert client.disconnects == 1 and not link.is_connected


async def test_handler_failure_drops_the_link() -> None:
    t = transport()
    link = t.link("AA:BB:CC:DD:EE:05")
    await link.connect(1.0)
    client = FakeClient.instances[0]

    async def full(data: bytes) -> None:
        raise RuntimeError("outbox full")

    await link.start_notify(HR, full)
    client.callbacks[HR](None, bytearray(b"\x01"))
    await asyncio.wait_for(link.wait_disconnected(), 2)
    assert client.disconnects == 1 and t.handler_failures == 1


async def test_peripheral_disconnect_ends_wait() -> None:
    link = transport().link("AA:BB:CC:DD:EE:06")
    await link.connect(1.0)
    client = FakeClient.instances[0]
    waiter = asyncio.create_task(link.wait_disconnected())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    client.is_connected = False
    assert client.cb is not None
    client.cb(client)  # BlueZ reports the link gone
    await asyncio.wait_for(waiter, 1)


async def test_full_notification_queue_keeps_every_confirmed_record(tmp_path: Any) -> None:
    """BlueZ confirms indications before our handler runs: an overflow must be kept, durably."""
    from edge.agent import _overflow_sink
    from edge.ble.bleak_transport import NOTIFY_QUEUE
    from edge.outbox import Outbox
    from edge.status import HubState

    outbox = Outbox(tmp_path / "outbox.sqlite")
    state = HubState()
    t = transport()
    t.set_overflow(_overflow_sink(outbox, state))
    link = t.link("AA:BB:CC:DD:EE:05")
    await link.connect(1.0)
    client = FakeClient.instances[0]
    release = asyncio.Event()
    handled: list[bytes] = []

    async def slow(data: bytes) -> None:
        await release.wait()  # a stuck consumer (e.g. a slow SD card)
        handled.append(data)

    await link.start_notify(HR, slow)
    total = NOTIFY_QUEUE + 50
    for i in range(total):
        client.callbacks[HR](None, bytearray(i.to_bytes(2, "big")))
    release.set()
    async with asyncio.timeout(5):
        while len(handled) < total - 50 - 1:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    kept = [d.raw for d in outbox.dead_letters()]
    assert len(handled) + len(kept) == total
    assert sorted(handled + kept) == [i.to_bytes(2, "big") for i in range(total)]
    assert state.counters["ble.notifications_kept"] == len(kept) > 0
    assert link.dropped_notifications == 0
    await link.disconnect()
    outbox.close()
