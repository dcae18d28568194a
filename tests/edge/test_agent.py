"""The whole edge agent: simulated radio -> sessions -> outbox -> real Mosquitto -> receipts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers import registry
from edge.agent import AgentParts, run_agent
from edge.config import BleConfig, DeviceBinding, HubConfig, MqttConfig
from simulators.ble import SimulatedRadio
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.physiology import Physiology, Profile
from simulators.serial import NoninSerial
from tests.edge.util import FakeGateway
from wire import contract

pytestmark = pytest.mark.integration

LISTED = "00:09:1F:00:00:01"
STRANGER = "00:09:1F:00:00:99"


async def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_agent_end_to_end(tmp_path: Path, mosquitto: type) -> None:
    mqtt_url = str(mosquitto().url)
    radio = SimulatedRadio()
    listed = BloodPressureMonitor(LISTED, Physiology(Profile.NORMAL, 1))
    stranger = BloodPressureMonitor(STRANGER, Physiology(Profile.NORMAL, 2))
    r0 = listed.take_reading()
    stranger.take_reading()
    radio.add(listed)
    radio.add(stranger)
    nonin = NoninSerial(Physiology(Profile.NORMAL, 3), data_format=2)
    await nonin.start()
    cfg = HubConfig(
        hub_id=f"agent-{uuid.uuid4().hex[:8]}",
        mqtt=MqttConfig(url=mqtt_url),
        data_dir=str(tmp_path),
        heartbeat_seconds=1.0,
        ble=BleConfig(scan_seconds=0.2, scan_pause_seconds=0.05),
        devices=[
            DeviceBinding(address=LISTED, patient="patient-a"),
            DeviceBinding(port=nonin.port, driver="nonin-df2", patient="patient-b"),
        ],
    )
    stop = asyncio.Event()
    parts: list[AgentParts] = []
    try:
        async with FakeGateway(mqtt_url, cfg.hub_id) as gw:
            task = asyncio.create_task(run_agent(cfg, radio, stop=stop, parts=parts))
            got: list[contract.Reading] = []

            def delivered() -> list[contract.Reading]:
                got[:] = [contract.decode_reading(r) for m in gw.received for r in m.readings]
                return got

            await until(
                lambda: (
                    any(r.device == LISTED for r in delivered())
                    and any(r.source == "nonin-df2" for r in delivered())
                )
            )
            await until(lambda: parts[0].outbox.stats().pending == 0 or len(delivered()) > 50)
            stop.set()
            await asyncio.wait_for(task, 20)
    finally:
        await nonin.aclose()
        await radio.aclose()
    state = parts[0].state
    bp = [r for r in got if r.device == LISTED]
    want = registry.decode("2a35", r0.data)
    assert [(r.mdc, r.value, r.patient, r.time_source) for r in bp] == [
        (o.mdc, str(o.quantity.value), "patient-a", "device") for o in want.observations
    ]
    assert not any(r.device == STRANGER for r in got)
    assert stranger.unsent != () and listed.unsent == ()
    assert state.counters["ble.ignored_advertisements"] >= 1
    oxi = [r for r in got if r.source == "nonin-df2"]
    assert {r.patient for r in oxi} == {"patient-b"}
    assert state.counters["uplink.receipts"] >= 1
