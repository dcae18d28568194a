"""Serial devices on a real pty, read with a real pyserial port, decoded by the drivers' framers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import serial

from drivers.contec import ContecFrame, ContecFramer
from drivers.errors import DecodeError
from drivers.nonin import NoninDf2Framer, NoninDf8Framer, NoninDf8Packet
from drivers.observation import Measurement
from simulators.clock import SimTime
from simulators.faults import SerialFaults
from simulators.physiology import Physiology, Profile
from simulators.serial import ContecCms50d, NoninSerial, PtyDevice
from simulators.serial.nonin import DF8_SELECT

PHYS = Physiology(Profile.HYPOXIC_COPD, 9)


@pytest.fixture
def world() -> SimTime:
    return SimTime(speed=10.0)


async def read_for(port: serial.Serial, seconds: float) -> bytes:
    """Non-blocking reads (the device runs on this event loop) for ``seconds``."""
    out = bytearray()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        out += port.read(4096)
        await asyncio.sleep(0.005)
    return bytes(out)


@pytest.fixture
async def contec(world: SimTime) -> AsyncIterator[ContecCms50d]:
    dev = ContecCms50d(PHYS, world=world)
    await dev.start()
    yield dev
    await dev.aclose()


def measurements(results: list[Measurement | DecodeError]) -> list[Measurement]:
    return [r for r in results if isinstance(r, Measurement)]


async def test_contec_frames_at_60_hz(contec: ContecCms50d) -> None:
    port = serial.Serial(contec.port, 19200, parity=serial.PARITY_ODD, timeout=0)
    try:
        data = await read_for(port, 0.3)  # 3 simulated seconds
    finally:
        port.close()
    results = ContecFramer().feed(data)
    frames = [ContecFrame.parse(m.raw) for m in measurements(results)]
    assert len(results) == len(frames) == len(data) // 5
    assert frames == [contec.frame(i) for i in range(len(frames))]
    assert 140 <= len(frames) <= 220  # 60 frames per simulated second
    first_second = PHYS.oximetry(0)
    assert (frames[0].spo2, frames[0].pulse_rate) == (
        int(first_second.spo2),
        int(first_second.pulse_rate),
    )


async def test_unplug_and_replug(contec: ContecCms50d) -> None:
    port = serial.serial_for_url(contec.port, timeout=0)
    assert await read_for(port, 0.05)
    contec.unplug()
    await asyncio.sleep(0.02)
    with pytest.raises(serial.SerialException):
        port.read(100)
        port.read(100)
    port.close()
    assert not os.path.exists(contec.port)
    await contec.replug()
    port = serial.serial_for_url(contec.port, timeout=0)  # the same path, a new pty
    try:
        assert ContecFramer().feed(await read_for(port, 0.05))
    finally:
        port.close()


async def test_contec_faults(world: SimTime) -> None:
    faults = SerialFaults(bad_sync_every=10, garbage_every=25, invalid_every=7)
    dev = ContecCms50d(PHYS, world=world, faults=faults)
    await dev.start()
    port = serial.Serial(dev.port, timeout=0)
    try:
        data = await read_for(port, 0.2)
    finally:
        port.close()
        await dev.aclose()
    results = ContecFramer().feed(data)
    errors = [r for r in results if isinstance(r, DecodeError)]
    good = [ContecFrame.parse(m.raw) for m in measurements(results)]
    n, size = 0, 0  # units completely inside what was read
    while size + 5 + (4 if n % 25 == 24 else 0) <= len(data):
        size += 5 + (4 if n % 25 == 24 else 0)
        n += 1
    bad_sync = {i for i in range(n) if i % 10 == 9}
    assert errors and all(e.field == "sync" for e in errors)
    # Every frame that was not broken on purpose decodes to what the device meant to send; the
    # garbage runs cost nothing else.
    expected = [dev.frame(i) for i in range(n) if i not in bad_sync]
    assert good == expected
    assert any(f.pulse_rate == 255 and f.spo2 == 127 for f in good)  # invalid every 7th


async def test_nonin_df2_packets(world: SimTime) -> None:
    dev = NoninSerial(PHYS, world=world)
    await dev.start()
    port = serial.Serial(dev.port, 9600, timeout=0)
    try:
        data = await read_for(port, 0.3)
    finally:
        port.close()
        await dev.aclose()
    results = NoninDf2Framer().feed(data)
    got = measurements(results)
    assert [r for r in results if isinstance(r, DecodeError)] == []
    assert got == [dev.packet(p).measurement() for p in range(len(got))]
    assert 6 <= len(got) <= 11  # 3 packets per simulated second
    assert [m.observations[0].quantity.value for m in got[:3]] == [PHYS.oximetry(0).spo2] * 3


async def test_nonin_df2_bad_checksum_and_sync(world: SimTime) -> None:
    dev = NoninSerial(PHYS, world=world, faults=SerialFaults(bad_checksum_every=60))
    await dev.start()
    port = serial.Serial(dev.port, timeout=0)
    try:
        data = await read_for(port, 0.4)
    finally:
        port.close()
        await dev.aclose()
    results = NoninDf2Framer().feed(data)
    errors = [r for r in results if isinstance(r, DecodeError)]
    good = measurements(results)
    # Frame 59 is in packet 2, frame 119 in packet 4: those packets are lost, the rest decode.
    broken = {i // 25 for i in range(len(data) // 5) if i % 60 == 59}
    full_packets = len(data) // 125
    assert [m.raw for m in good] == [
        dev.packet(p).encode() for p in range(full_packets) if p not in broken
    ]
    assert errors and {e.field for e in errors} <= {"sync", "packet"}


async def test_nonin_df8_waits_for_its_format_command(world: SimTime) -> None:
    dev = NoninSerial(PHYS, data_format=8, world=SimTime(speed=20.0))
    await dev.start()
    port = serial.Serial(dev.port, timeout=0)
    try:
        assert await read_for(port, 0.1) == b""  # nothing until the host selects DF8
        port.write(DF8_SELECT)
        data = await read_for(port, 0.3)
    finally:
        port.close()
        await dev.aclose()
    assert data[:1] == b"\x06"  # ACK
    results = NoninDf8Framer().feed(data)
    packets = [NoninDf8Packet.parse(m.raw) for m in measurements(results)]
    assert packets == [dev.df8_packet(p) for p in range(len(packets))]
    assert 3 <= len(packets) <= 8
    assert [e.field for e in results if isinstance(e, DecodeError)] == ["sync"]  # the ACK


async def test_unplug_after_fault_delivers_what_was_sent(world: SimTime) -> None:
    dev: PtyDevice = NoninSerial(PHYS, world=world, faults=SerialFaults(unplug_after=50))
    await dev.start()
    port = serial.Serial(dev.port, timeout=0)
    data = bytearray()
    with pytest.raises(serial.SerialException):
        for _ in range(200):
            data += port.read(4096)
            await asyncio.sleep(0.005)
    port.close()
    await dev.aclose()
    assert len(data) == 250  # 50 frames, then the cable was pulled
    assert len(measurements(NoninDf2Framer().feed(bytes(data)))) == 2
