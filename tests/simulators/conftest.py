"""Shared fixtures and a small A&D-style central for the simulator tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import pytest

from drivers.gatt_time import device_time_from, encode_current_time, encode_date_time
from edge.ble.transport import uuid16
from simulators.ble import SimulatedLink, SimulatedRadio
from simulators.clock import SimTime

DATE_TIME = uuid16(0x2A08)
CURRENT_TIME = uuid16(0x2A2B)
NOW = datetime(2024, 6, 1, 7, 30, 0)
SPEED = 50.0  # simulated seconds per real second in these tests


@pytest.fixture
def world() -> SimTime:
    return SimTime(speed=SPEED)


@pytest.fixture
async def radio(world: SimTime) -> AsyncIterator[SimulatedRadio]:
    r = SimulatedRadio(world=world, scan_latency=0.01, att_timeout=2.0)
    yield r
    await r.aclose()


class Collector:
    """A notify handler that keeps what it got (optionally after an await of its own)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.items: list[bytes] = []
        self.delay = delay

    async def __call__(self, data: bytes) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.items.append(data)


async def upload(
    radio: SimulatedRadio,
    address: str,
    measurement: str,
    *,
    when: datetime = NOW,
    time_char: str | None = DATE_TIME,
    handler: Callable[[bytes], Awaitable[None]] | None = None,
    timeout: float = 3.0,
) -> tuple[list[bytes], SimulatedLink]:
    """Connect, subscribe, write the time, wait until the device disconnects."""
    link = radio.link(address)
    await link.connect(1.0)
    got = Collector()
    await link.start_notify(measurement, handler or got)
    if time_char == DATE_TIME:
        data = encode_date_time(device_time_from(when))
        await link.write(DATE_TIME, data, response=True, timeout=1.0)
    elif time_char == CURRENT_TIME:
        await link.write(CURRENT_TIME, encode_current_time(when), response=True, timeout=1.0)
    await asyncio.wait_for(link.wait_disconnected(), timeout)
    return got.items, link
