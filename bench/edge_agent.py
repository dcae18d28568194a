"""``python -m bench.edge_agent '<json options>'``: the real edge agent, in a process of its own.

:func:`edge.agent.run_agent` with its default settings (scan windows, heartbeat, outbox limits),
except a reconnect backoff capped at 2 s so that the replay measurement starts promptly. The
devices are simulated in the same process (the simulator's radio *is* the BLE seam): ``"idle"``
binds the devices but none is switched on (the agent scans and heartbeats, nothing else);
``"stream"`` switches on the PLX oximeters and the heart-rate strap of :data:`DEVICES`.

Prints ``{"event": "connected"|"disconnected", "t": monotonic}`` lines on stdout; stops (cleanly)
when stdin is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any, Final

from edge.agent import AgentParts, run_agent
from edge.config import DeviceBinding, HubConfig, Limits, MqttConfig
from simulators.ble.radio import SimulatedRadio
from simulators.devices.heart_rate import HeartRateStrap
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.physiology import Physiology, Profile

HUB: Final = "bench-edge-hub"
PATIENT: Final = "bench-edge-p1"
#: (address, kind): three PLX oximeters at 1 Hz (3 readings per record) and a heart-rate strap
#: (1 reading per notification): about 10 readings/s.
DEVICES: Final = (
    ("C0:FE:ED:00:00:01", "plx"),
    ("C0:FE:ED:00:00:02", "plx"),
    ("C0:FE:ED:00:00:03", "plx"),
    ("C0:FE:ED:00:00:04", "hr"),
)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _watch(parts: list[AgentParts], stop: asyncio.Event) -> None:
    await asyncio.sleep(0)  # run_agent() fills ``parts`` before its first await
    uplink = parts[0].uplink
    while not stop.is_set():
        await uplink.connected.wait()
        _emit({"event": "connected", "t": time.monotonic()})
        # the uplink offers an event for "connected" only; its end is polled (cheaply)
        while uplink.connected.is_set() and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        _emit({"event": "disconnected", "t": time.monotonic()})


async def _main(opts: dict[str, Any]) -> None:
    config = HubConfig(
        hub_id=HUB,
        mqtt=MqttConfig(url=opts["mqtt_url"]),
        data_dir=opts["data_dir"],
        limits=Limits(reconnect_max_seconds=2.0),
        devices=[DeviceBinding(address=a, patient=PATIENT) for a, _ in DEVICES],
    )
    radio = SimulatedRadio()
    if opts["mode"] == "stream":
        for i, (address, kind) in enumerate(DEVICES):
            phys = Physiology(Profile.NORMAL, i)
            radio.add(
                PulseOximeter(address, phys) if kind == "plx" else HeartRateStrap(address, phys)
            )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    parts: list[AgentParts] = []
    agent = asyncio.create_task(run_agent(config, radio, stop=stop, parts=parts))
    watcher = asyncio.create_task(_watch(parts, stop))
    try:
        await agent
    finally:
        watcher.cancel()
        await radio.aclose()


def main() -> None:
    # ERROR: the link is cut on purpose, the agent's reconnect warnings are expected
    logging.basicConfig(
        level=logging.ERROR,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
