"""The simulated radio implements the edge's BLE seam with bleak-like semantics."""

from __future__ import annotations

import asyncio

import pytest

from edge.ble.transport import Advertisement, BleLink, BleTransport, TransportError, uuid16
from simulators.ble import (
    AttError,
    AttErrorCode,
    Characteristic,
    GattError,
    Peripheral,
    Prop,
    Service,
    SimulatedRadio,
)
from simulators.clock import SimTime
from tests.simulators.conftest import Collector

SVC = uuid16(0x1810)
IND = uuid16(0x2A35)
NTF = uuid16(0x2A36)
RD = uuid16(0x2A49)
WR = uuid16(0x2A08)
CMD = "233bf001-5a34-1b6d-975c-000d5690abe4"


class Probe(Peripheral):
    """A peripheral whose writes are recorded and whose hooks are observable."""

    def __init__(self, address: str, world: SimTime) -> None:
        self.writes: list[bytes] = []
        self.subscriptions: list[tuple[str, bool]] = []
        self.disconnects: list[str] = []
        chars = (
            Characteristic(IND, Prop.INDICATE),
            Characteristic(NTF, Prop.NOTIFY),
            Characteristic(RD, Prop.READ, b"\x07\x00"),
            Characteristic(WR, Prop.READ | Prop.WRITE, on_write=self._write),
            Characteristic(CMD, Prop.WRITE_NO_RESPONSE, on_write=self._write),
        )
        super().__init__(address, "Probe", [Service(SVC, chars)], world=world)

    async def _write(self, data: bytes) -> None:
        if data == b"bad":
            raise AttError(AttErrorCode.VALUE_NOT_ALLOWED, "bad value")
        self.writes.append(data)

    def on_subscribe(self, uuid: str, enabled: bool) -> None:
        self.subscriptions.append((uuid, enabled))

    def on_disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)


@pytest.fixture
def probe(radio: SimulatedRadio, world: SimTime) -> Probe:
    p = Probe("aa:bb:cc:00:00:01", world)
    radio.add(p)
    p.start_advertising()
    return p


def test_implements_the_seam(radio: SimulatedRadio) -> None:
    assert isinstance(radio, BleTransport)
    assert isinstance(radio.link("AA:BB:CC:00:00:01"), BleLink)


async def test_scan_returns_only_advertising_peripherals(
    radio: SimulatedRadio, probe: Probe, world: SimTime
) -> None:
    quiet = Probe("AA:BB:CC:00:00:02", world)
    radio.add(quiet)
    ads = await radio.scan(1.0)
    assert ads == (Advertisement("AA:BB:CC:00:00:01", "Probe", (), -60, {}),)


async def test_scan_sees_a_peripheral_that_advertised_during_the_window(
    world: SimTime,
) -> None:
    radio = SimulatedRadio(world=world)  # scan lasts the full timeout
    p = Probe("AA:BB:CC:00:00:03", world)
    radio.add(p)
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, p.start_advertising)
    loop.call_later(0.04, p.stop_advertising)
    ads = await radio.scan(0.1)
    assert [a.address for a in ads] == ["AA:BB:CC:00:00:03"]
    assert await radio.scan(0.01) == ()


async def test_connect_times_out_when_not_advertising(
    radio: SimulatedRadio, world: SimTime
) -> None:
    radio.add(Probe("AA:BB:CC:00:00:04", world))
    link = radio.link("AA:BB:CC:00:00:04")
    with pytest.raises(TransportError, match="connect timed out"):
        await link.connect(0.05)
    assert not link.is_connected
    with pytest.raises(TransportError, match="connect timed out"):
        await radio.link("AA:BB:CC:00:00:99").connect(0.02)


async def test_connect_waits_for_advertising_and_stops_it(
    radio: SimulatedRadio, world: SimTime
) -> None:
    p = Probe("AA:BB:CC:00:00:05", world)
    radio.add(p)
    asyncio.get_running_loop().call_later(0.02, p.start_advertising)
    link = radio.link("aa:bb:cc:00:00:05")
    await link.connect(1.0)
    assert (link.is_connected, p.connected, p.advertising, link.address) == (
        True,
        True,
        False,
        "AA:BB:CC:00:00:05",
    )
    # A second central cannot connect while the first holds the link.
    with pytest.raises(TransportError):
        await radio.link("AA:BB:CC:00:00:05").connect(0.05)


async def test_discovery_read_write(radio: SimulatedRadio, probe: Probe) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)
    assert await link.services() == (SVC,)
    assert await link.characteristics() == (IND, NTF, RD, WR, CMD)
    assert await link.read("2a49", timeout=1.0) == b"\x07\x00"
    await link.write("0x2A08", b"\x01\x02", response=True, timeout=1.0)
    await link.write(CMD, b"\x03", response=False, timeout=1.0)
    assert probe.writes == [b"\x01\x02", b"\x03"]


async def test_gatt_errors_are_transport_errors(radio: SimulatedRadio, probe: Probe) -> None:
    link = radio.link(probe.address)
    with pytest.raises(TransportError, match="not connected"):
        await link.read(RD, timeout=1.0)
    await link.connect(1.0)
    with pytest.raises(GattError) as err:
        await link.write(WR, b"bad", response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.VALUE_NOT_ALLOWED
    with pytest.raises(GattError) as err:
        await link.read(IND, timeout=1.0)
    assert err.value.code == AttErrorCode.READ_NOT_PERMITTED
    with pytest.raises(GattError) as err:
        await link.write(RD, b"\x00", response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.WRITE_NOT_PERMITTED
    with pytest.raises(GattError):  # write command to a characteristic without that property
        await link.write(WR, b"\x00", response=False, timeout=1.0)
    with pytest.raises(TransportError, match="not found"):
        await link.read(uuid16(0x2A99), timeout=1.0)
    with pytest.raises(TransportError, match="no notify"):
        await link.start_notify(RD, Collector())
    # A rejected write *command* gets no response: the central does not hear about it.
    await link.write(CMD, b"bad", response=False, timeout=1.0)
    assert probe.writes == []
    assert link.is_connected


async def test_notify_and_indicate_reach_the_handler(radio: SimulatedRadio, probe: Probe) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)
    notes, inds = Collector(), Collector()
    assert await probe.notify(NTF, b"\x01") is False  # nobody subscribed: dropped
    await link.start_notify(NTF, notes)
    await link.start_notify(IND, inds)
    assert probe.subscriptions == [(NTF, True), (IND, True)]
    assert await probe.notify(NTF, b"\x02") is True
    assert await probe.indicate(IND, b"\x03") is True
    await link.stop_notify(NTF)
    assert await probe.notify(NTF, b"\x04") is False
    assert (notes.items, inds.items) == ([b"\x02"], [b"\x03"])
    assert probe.subscriptions[-1] == (NTF, False)
    with pytest.raises(ValueError, match="INDICATE"):
        await probe.indicate(NTF, b"\x00")
    with pytest.raises(ValueError, match="ATT_MTU"):
        await probe.indicate(IND, bytes(21))


async def test_indication_is_confirmed_only_after_the_handler_returns(
    radio: SimulatedRadio, probe: Probe
) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)
    started = asyncio.Event()
    release = asyncio.Event()
    got: list[bytes] = []

    async def slow(data: bytes) -> None:
        started.set()
        await release.wait()
        got.append(data)

    await link.start_notify(IND, slow)
    confirm = asyncio.ensure_future(probe.indicate(IND, b"\x10"))
    await started.wait()
    await asyncio.sleep(0.01)
    assert not confirm.done()  # the handler is still persisting: no confirmation yet
    await link.disconnect()  # the link drops first
    assert await confirm is False
    release.set()
    await asyncio.sleep(0.01)
    assert got == [b"\x10"]  # the central did finish (it will see a replay: dedup is its job)
    assert probe.disconnects == ["central"]


async def test_cut_link_fault_delivers_bytes_but_no_confirmation(
    radio: SimulatedRadio, probe: Probe
) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)
    got = Collector()
    await link.start_notify(IND, got)
    assert await probe.indicate(IND, b"\x11", cut_link=True) is False
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    await asyncio.sleep(0)
    assert (got.items, link.disconnect_reason) == ([b"\x11"], "link lost before confirmation")


async def test_failing_handler_is_never_confirmed(radio: SimulatedRadio, probe: Probe) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)

    async def broken(data: bytes) -> None:
        raise OSError("disk full")

    await link.start_notify(IND, broken)
    assert await probe.indicate(IND, b"\x12") is False
    assert not link.is_connected
    assert radio.handler_failures == 1
    assert link.disconnect_reason == "indication not confirmed (central handler failed)"


async def test_att_timeout_drops_the_link(world: SimTime) -> None:
    radio = SimulatedRadio(world=world, att_timeout=0.05)
    p = Probe("AA:BB:CC:00:00:06", world)
    radio.add(p)
    p.start_advertising()
    link = radio.link(p.address)
    await link.connect(1.0)
    await link.start_notify(IND, Collector(delay=0.5))
    assert await p.indicate(IND, b"\x13") is False
    assert link.disconnect_reason == "ATT transaction timeout"
    await radio.aclose()


async def test_peripheral_disconnect_and_out_of_range(radio: SimulatedRadio, probe: Probe) -> None:
    link = radio.link(probe.address)
    await link.connect(1.0)
    waiter = asyncio.ensure_future(link.wait_disconnected())
    await probe.disconnect("done")
    await asyncio.wait_for(waiter, 1.0)
    assert (link.is_connected, link.disconnect_reason, probe.disconnects) == (
        False,
        "done",
        ["done"],
    )
    with pytest.raises(TransportError, match="not connected"):
        await link.services()
    probe.start_advertising()
    link2 = radio.link(probe.address)
    await link2.connect(1.0)
    probe.set_in_range(False)
    await asyncio.wait_for(link2.wait_disconnected(), 1.0)
    assert link2.disconnect_reason == "out of range"
    assert await radio.scan(0.01) == ()
    probe.set_in_range(True)
    assert [a.address for a in await radio.scan(0.01)] == [probe.address]


async def test_read_handler_timeout_and_link_loss(radio: SimulatedRadio, world: SimTime) -> None:
    stuck = asyncio.Event()

    async def never() -> bytes:
        await stuck.wait()
        return b""

    p = Peripheral(
        "AA:BB:CC:00:00:07",
        "Stuck",
        [Service(SVC, (Characteristic(RD, Prop.READ, on_read=never),))],
        world=world,
    )
    radio.add(p)
    p.start_advertising()
    link = radio.link(p.address)
    await link.connect(1.0)
    with pytest.raises(TransportError, match="timed out"):
        await link.read(RD, timeout=0.02)
    asyncio.get_running_loop().call_later(0.02, radio.drop, p.address)
    with pytest.raises(TransportError, match="link lost"):
        await link.read(RD, timeout=1.0)
