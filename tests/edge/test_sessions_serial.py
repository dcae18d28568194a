"""Serial sessions against real pseudo-terminals (simulators.serial)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers import registry
from edge.config import DeviceBinding, HubConfig, MqttConfig
from edge.outbox import Outbox
from edge.sessions.common import SessionEnv
from edge.sessions.serial import (
    PortInfo,
    SerialConfigError,
    resolve_serial_driver,
    run_serial_session,
)
from edge.status import HubState
from simulators.faults import SerialFaults
from simulators.physiology import Physiology, Profile
from simulators.serial import ContecCms50d, NoninSerial
from wire import contract


def make_env(tmp_path: Path, binding: DeviceBinding) -> SessionEnv:
    cfg = HubConfig(
        hub_id="hub-t",
        mqtt=MqttConfig(url="mqtt://127.0.0.1"),
        data_dir=str(tmp_path),
        devices=[binding],
    )
    return SessionEnv(
        cfg, Outbox(tmp_path / "o.db"), HubState(), registry, hub_clock=lambda: "unknown"
    )


def stored(box: Outbox) -> list[contract.Reading]:
    return [contract.decode_reading(r.payload) for r in box.pending(100_000)]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def records(box: Outbox) -> list[list[contract.Reading]]:
    groups: dict[str, list[contract.Reading]] = {}
    for r in stored(box):
        groups.setdefault(r.group, []).append(r)
    return list(groups.values())


async def test_nonin_df2_stream_downsampled_and_reconnects_after_unplug(tmp_path: Path) -> None:
    dev = NoninSerial(Physiology(Profile.NORMAL, 5), data_format=2)
    await dev.start()
    binding = DeviceBinding(port=dev.port, driver="nonin-df2", patient="patient-a")
    env = make_env(tmp_path, binding)
    stop = asyncio.Event()
    task = asyncio.create_task(run_serial_session(env, binding, stop))
    try:
        t0 = time.monotonic()
        await until(
            lambda: len(records(env.outbox)) >= 2 and env.state.counters["records.downsampled"] >= 1
        )
        dev.unplug()  # cable pulled: reads fail, the port path disappears
        await until(
            lambda: (
                env.state.counters["serial.lost"] + env.state.counters["serial.open_failed"] >= 1
            )
        )
        await dev.replug()
        await until(lambda: env.state.counters["serial.opened"] == 2)
        n = len(records(env.outbox))
        await until(lambda: len(records(env.outbox)) >= n + 1)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await dev.aclose()
    recs = records(env.outbox)
    # DF2 sends 3 packets/s; at most one record per second is kept
    seconds = [r[0].received_at.replace(microsecond=0) for r in recs]
    assert len(seconds) == len(set(seconds)) and len(recs) <= elapsed + 1
    # readings from before the unplug and after the replug (the session really reconnected)
    assert len(recs) >= 3
    for rec in recs:
        assert {r.kind for r in rec} == {"continuous"}
        assert {r.time_source for r in rec} == {"hub"}
        assert {r.source for r in rec} == {"nonin-df2"}
        assert {r.device for r in rec} == {f"serial:{dev.port}"}
    v = Physiology(Profile.NORMAL, 5)
    spo2 = {r.value for rec in recs for r in rec if r.mdc == 150456}
    assert spo2 <= {str(v.oximetry(t).spo2) for t in range(0, 60)}


async def test_contec_by_usb_id_with_bad_checksums_dead_lettered(tmp_path: Path) -> None:
    dev = ContecCms50d(Physiology(Profile.NORMAL, 6), faults=SerialFaults(bad_sync_every=7))
    await dev.start()
    binding = DeviceBinding(usb="10c4:ea60", patient="patient-a")
    env = make_env(tmp_path, binding)
    stop = asyncio.Event()
    ports = [PortInfo("/dev/ttyS0"), PortInfo(dev.port, 0x10C4, 0xEA60)]
    task = asyncio.create_task(run_serial_session(env, binding, stop, ports=lambda: ports))
    try:
        await until(lambda: len(records(env.outbox)) >= 1 and env.outbox.dead_letters() != [])
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await dev.aclose()
    assert {r.source for r in stored(env.outbox)} == {"contec-cms50d"}
    assert {r.device for r in stored(env.outbox)} == {"usb:10c4:ea60"}
    # the good frames between the bad ones decode to the simulated patient's values
    v = Physiology(Profile.NORMAL, 6)
    spo2 = {r.value for r in stored(env.outbox) if r.mdc == 150456}
    assert spo2 and spo2 <= {str(v.oximetry(t).spo2) for t in range(0, 60)}
    dl = env.outbox.dead_letters()[0]
    assert (dl.device, dl.source) == ("usb:10c4:ea60", "contec-cms50d") and dl.raw
    assert dl.reason
    assert env.state.counters["decode.errors"] == len(env.outbox.dead_letters())


async def test_nonin_df8_is_asked_to_stream(tmp_path: Path) -> None:
    dev = NoninSerial(Physiology(Profile.NORMAL, 7), data_format=8)
    await dev.start()
    binding = DeviceBinding(port=dev.port, driver="nonin-df8", patient="patient-a")
    env = make_env(tmp_path, binding)
    stop = asyncio.Event()
    task = asyncio.create_task(run_serial_session(env, binding, stop))
    try:
        await until(lambda: len(records(env.outbox)) >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await dev.aclose()
    assert dev.selected
    assert {r.source for r in stored(env.outbox)} == {"nonin-df8"}
    v = Physiology(Profile.NORMAL, 7)
    spo2 = {r.value for r in stored(env.outbox) if r.mdc == 150456}
    assert spo2 and spo2 <= {str(v.oximetry(t).spo2) for t in range(0, 60)}


async def test_raw_pty_frames_written_by_the_test(tmp_path: Path) -> None:
    """Without the simulator: DF8 packets written to the pty master by hand."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    binding = DeviceBinding(port=path, driver="nonin-df8", patient="patient-a")
    env = make_env(tmp_path, binding)
    stop = asyncio.Event()
    task = asyncio.create_task(run_serial_session(env, binding, stop))
    try:
        await until(lambda: env.state.counters["serial.opened"] == 1)
        # STATUS1 (b7, HR bits 8-7 = 0) | HR LSB 72 | SpO2 97 | STATUS2 SmartPoint
        os.write(master, bytes((0x80, 72, 97, 0x20)))
        await until(lambda: len(stored(env.outbox)) >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        os.close(master)
        os.close(slave)
    assert sorted((r.mdc, r.value) for r in stored(env.outbox)) == [(149530, "72"), (150456, "97")]


def test_driver_resolution_errors() -> None:
    with pytest.raises(SerialConfigError, match="not a serial driver"):
        resolve_serial_driver(registry, DeviceBinding(port="/dev/x", driver="2a35", patient="p"))
    with pytest.raises(SerialConfigError, match="needs driver"):
        resolve_serial_driver(registry, DeviceBinding(port="/dev/x", patient="p"))
    with pytest.raises(SerialConfigError, match="matches none"):
        resolve_serial_driver(registry, DeviceBinding(usb="0000:0001", patient="p"))
    assert (
        resolve_serial_driver(registry, DeviceBinding(usb="10c4:ea60", patient="p")).key
        == "contec-cms50d"
    )


async def test_open_failure_is_visible_once_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_tty = tmp_path / "ttyUSB9"
    not_a_tty.write_bytes(b"")
    binding = DeviceBinding(port=str(not_a_tty), driver="nonin-df8", patient="patient-a")
    env = make_env(tmp_path, binding)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="edge.sessions.serial"):
        task = asyncio.create_task(run_serial_session(env, binding, stop))
        try:
            await until(lambda: env.state.counters["serial.open_failed"] >= 2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
    failures = [r for r in caplog.records if "cannot open" in r.getMessage()]
    assert [r.levelno for r in failures][:2] == [logging.WARNING, logging.INFO]
    assert str(not_a_tty) in failures[0].getMessage()
