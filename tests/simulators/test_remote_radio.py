"""The simulated radio over a socket (edge.ble.remote_transport ↔ simulators.ble.server): the
edge's sessions behave as on the in-process radio — same readings, same confirmations — and a
handler that fails leaves the record on the device; an unreachable simulator is a
TransportError, as a dead radio is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from drivers.glucose import GlucoseRecord
from edge.ble.remote_transport import RemoteRadio, parse_endpoint
from edge.ble.transport import TransportError, uuid16
from edge.config import DeviceBinding
from edge.sessions.ble import run_ble_session
from simulators.ble import SimulatedRadio
from simulators.ble.server import serve
from simulators.clock import DeviceClock, SimTime
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.glucose import GlucoseMeter
from simulators.physiology import Physiology, Profile
from telehub.embedded import free_port
from tests.edge.test_sessions_ble import ADDR, expected, make_env, stored

MEASUREMENT = uuid16(0x2A35)


@pytest.fixture
async def served() -> AsyncIterator[tuple[SimulatedRadio, RemoteRadio]]:
    radio = SimulatedRadio(world=SimTime())
    server = await serve(radio, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    remote = RemoteRadio(f"127.0.0.1:{port}")
    try:
        yield radio, remote
    finally:
        await remote.aclose()
        server.close()
        await server.wait_closed()
        await radio.aclose()


async def test_a_spot_upload_through_the_socket_is_the_same_as_in_process(
    served: tuple[SimulatedRadio, RemoteRadio], tmp_path: Path
) -> None:
    radio, remote = served
    world = radio.world
    clock = DeviceClock(world, offset=-(datetime.now() - datetime(2000, 1, 1)) / 2)
    bp = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 1), world=world, clock=clock)
    r0, r1 = bp.take_reading(), bp.take_reading()
    radio.add(bp)
    [ad] = [a for a in await remote.scan(0.5) if a.address == ADDR]
    assert ad.name == bp.name
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    link = remote.link(ADDR)
    result = await asyncio.wait_for(run_ble_session(env, binding, link, asyncio.Event()), 30)
    assert result == "disconnected"  # the cuff hung up; the event crossed the socket
    assert bp.confirmed == [0, 1] and bp.unsent == ()
    assert stored(env.outbox) == (
        expected(binding, "2a35", r0.data, clock_set=True)
        + expected(binding, "2a35", r1.data, clock_set=True)
    )


async def test_racp_writes_and_indications_cross_the_socket(
    served: tuple[SimulatedRadio, RemoteRadio], tmp_path: Path
) -> None:
    radio, remote = served
    meter = GlucoseMeter(ADDR, Physiology(Profile.NORMAL, 2), world=radio.world)
    readings = [meter.take_reading() for _ in range(3)]
    radio.add(meter)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    await asyncio.wait_for(run_ble_session(env, binding, remote.link(ADDR), asyncio.Event()), 30)
    got = [GlucoseRecord.parse(bytes.fromhex(r.raw)).sequence_number for r in stored(env.outbox)]
    assert sorted(set(got)) == [r.sequence_number for r in readings]


async def test_a_failing_handler_leaves_the_record_on_the_device(
    served: tuple[SimulatedRadio, RemoteRadio],
) -> None:
    radio, remote = served
    bp = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 3), world=radio.world)
    bp.take_reading()
    radio.add(bp)
    link = remote.link(ADDR)
    await link.connect(5.0)
    assert link.is_connected
    assert MEASUREMENT in await link.characteristics()
    calls = 0

    async def broken(data: bytes) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the edge's outbox is broken")

    await link.start_notify(MEASUREMENT, broken)
    # the cuff uploads once its clock is written (Date Time 0x2A08, as the hub does)
    date_time = bytes([0xEA, 0x07, 12, 4, 10, 0, 0])
    await link.write(uuid16(0x2A08), date_time, response=True, timeout=5.0)
    await asyncio.wait_for(link.wait_disconnected(), 30)  # the device gives up on the link
    assert calls >= 1
    assert len(bp.unsent) == 1 and bp.confirmed == []  # never confirmed: still on the device
    assert not link.is_connected
    with pytest.raises(TransportError):
        await link.read(MEASUREMENT, 1.0)


async def test_an_unreachable_simulator_is_a_transport_error() -> None:
    remote = RemoteRadio(f"127.0.0.1:{free_port()}", connect_timeout=2.0)
    with pytest.raises(TransportError, match="unreachable"):
        await remote.scan(0.1)
    with pytest.raises(TransportError):
        await remote.link(ADDR).connect(1.0)


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:0", ":80", "h:99999", "h:x"])
def test_endpoints_are_host_and_port(text: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        parse_endpoint(text)
