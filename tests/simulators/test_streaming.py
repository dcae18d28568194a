"""Streaming devices: 1 Hz in simulated time, values from the generator, stream faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers import registry
from drivers.errors import DecodeError
from drivers.heart_rate import MEASUREMENT_UUID as HR_UUID
from drivers.nonin import NONIN_OXIMETRY_MEASUREMENT, NoninBleRecord
from drivers.pulse_oximeter import CONTINUOUS_UUID, SPOT_UUID, PlxContinuousRecord
from simulators.ble import SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.heart_rate import HeartRateStrap
from simulators.devices.nonin import Nonin3230
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.faults import Faults
from simulators.physiology import Physiology, Profile
from tests.simulators.conftest import SPEED, Collector

ADDR = "C0:00:00:00:00:04"
COPD = Physiology(Profile.HYPOXIC_COPD, 3)


class Timed(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    async def __call__(self, data: bytes) -> None:
        self.at.append(time.monotonic())
        await super().__call__(data)


async def test_plx_continuous_at_1_hz(radio: SimulatedRadio, world: SimTime) -> None:
    ox = PulseOximeter(ADDR, COPD, world=world)
    radio.add(ox)
    link = radio.link(ADDR)
    await link.connect(1.0)
    got = Timed()
    await link.start_notify(CONTINUOUS_UUID, got)
    await asyncio.sleep(20 / SPEED)  # 20 simulated seconds
    await link.disconnect()
    n = len(got.items)
    assert 15 <= n <= 22
    expected = [ox.continuous_record(k) for k in range(n)]
    assert [PlxContinuousRecord.parse(b) for b in got.items] == expected
    spacing = (got.at[-1] - got.at[0]) / (n - 1) * SPEED  # simulated seconds between samples
    assert 0.8 < spacing < 1.2
    # The COPD profile dips below 90 % from second 5: a threshold trips within the first samples.
    spo2 = [registry.get("2a5f").decode(b).observations[0].quantity.value for b in got.items]
    assert any(v is not None and v < 90 for v in spo2[5:10])
    assert ox.advertising  # back to advertising once the central left


async def test_plx_spot_check_confirmation(radio: SimulatedRadio, world: SimTime) -> None:
    ox = PulseOximeter(ADDR, COPD, world=world, faults=Faults(cut_during=0))
    radio.add(ox)
    first = ox.take_spot_check()
    link = radio.link(ADDR)
    await link.connect(1.0)
    got = Collector()
    await link.start_notify(SPOT_UUID, got)
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    assert got.items == [first.encode()] and ox.unsent_spot_checks == (first,)
    ox.faults = Faults()
    link = radio.link(ADDR)
    await link.connect(1.0)
    got2 = Collector()
    await link.start_notify(SPOT_UUID, got2)
    second = ox.take_spot_check()
    for _ in range(200):
        if len(got2.items) == 2:
            break
        await asyncio.sleep(0.005)
    assert got2.items == [first.encode(), second.encode()]
    assert not ox.unsent_spot_checks
    await link.disconnect()


async def test_nonin_stream_and_disconnect_fault(radio: SimulatedRadio, world: SimTime) -> None:
    dev = Nonin3230(ADDR, COPD, world=world, faults=Faults(disconnect_after=5))
    radio.add(dev)
    link = radio.link(ADDR)
    await link.connect(1.0)
    got = Collector()
    await link.start_notify(NONIN_OXIMETRY_MEASUREMENT, got)
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    assert link.disconnect_reason == "fault: disconnect mid-stream"
    assert [NoninBleRecord.parse(b) for b in got.items] == [dev.record(k) for k in range(5)]
    # Reconnecting continues the device's counter (a new link, the same measurement).
    link = radio.link(ADDR)
    await link.connect(1.0)
    got2 = Collector()
    await link.start_notify(NONIN_OXIMETRY_MEASUREMENT, got2)
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    assert [NoninBleRecord.parse(b).counter for b in got2.items] == [5, 6, 7, 8, 9]


async def test_truncated_and_duplicate_notifications(radio: SimulatedRadio, world: SimTime) -> None:
    faults = Faults(truncate_readings=frozenset({1}), truncate_to=2, duplicate=True)
    strap = HeartRateStrap(ADDR, COPD, world=world, faults=faults)
    radio.add(strap)
    link = radio.link(ADDR)
    await link.connect(1.0)
    got = Collector()
    await link.start_notify(HR_UUID, got)
    await asyncio.sleep(2.5 / SPEED)
    await link.disconnect()
    cut = strap.payload(1)[:2]
    assert got.items[:4] == [strap.payload(0), strap.payload(0), cut, cut]
    assert len(strap.payload(1)) > 2
    registry.get("2a37").decode(got.items[0])
    with pytest.raises(DecodeError):  # flags announce RR intervals that are not there
        registry.get("2a37").decode(got.items[2])


async def test_battery_notification(radio: SimulatedRadio, world: SimTime) -> None:
    strap = HeartRateStrap(ADDR, COPD, world=world)
    radio.add(strap)
    link = radio.link(ADDR)
    await link.connect(1.0)
    assert await link.read("2a19", 1.0) == b"\x55"
    got = Collector()
    await link.start_notify("2a19", got)
    await strap.set_battery(12)
    assert (got.items, await link.read("2a19", 1.0)) == ([b"\x0c"], b"\x0c")
    await link.disconnect()
