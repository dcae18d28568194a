"""GATT building blocks shared by the BLE procedures: clock, subscriptions, battery, waiting.

Order on every connection (reference §6.5, §8.8), all within ``clock_deadline`` of connecting:

1. connect, discover;
2. if the device has Current Time 0x2A2B: write it *before* subscribing, so every record arrives
   after the clock was set;
3. enable notifications and indications on every characteristic the registry knows;
4. else, if it has Date Time 0x2A08 (A&D): write it now. A&D devices start their upload when the
   clock is written, and the records must not arrive before the central listens.

A device whose clock could not be set yields ``time_source="device-unverified"`` readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from drivers.driver import Driver, Framer
from drivers.gatt_time import device_time_from, encode_current_time, encode_date_time
from drivers.observation import Kind
from edge.ble.transport import BleLink, TransportError, uuid16
from edge.clock import now_local
from edge.config import DeviceBinding
from edge.outbox import OutboxFull
from edge.sessions.common import RecordSink, SessionEnv

log = logging.getLogger(__name__)

CURRENT_TIME = uuid16(0x2A2B)
DATE_TIME = uuid16(0x2A08)
BATTERY_LEVEL = uuid16(0x2A19)
RACP = uuid16(0x2A52)
GLUCOSE_MEASUREMENT = uuid16(0x2A18)
GLUCOSE_CONTEXT = uuid16(0x2A34)


class SessionAborted(Exception):
    """The procedure could not complete (timeout, refused transfer); the link is dropped."""


@dataclass(slots=True)
class Subscription:
    uuid: str
    driver: Driver | None  # None for control points (RACP) and parsers (glucose context)
    framer: Framer | None


class GattConnection:
    """One connected link plus what the session learnt about it."""

    def __init__(
        self, env: SessionEnv, binding: DeviceBinding, link: BleLink, characteristics: set[str]
    ) -> None:
        self.env = env
        self.binding = binding
        self.link = link
        self.chars = characteristics
        self.sink = RecordSink(env, binding)
        self.connected_at = time.monotonic()
        self.subscriptions: dict[str, Subscription] = {}
        self.failed: BaseException | None = None  # a handler failure (OutboxFull)
        self.timeout = env.config.ble.gatt_timeout

    # -- drivers --------------------------------------------------------------------------------
    def driver_for(self, uuid: str) -> Driver | None:
        override = self.binding.driver
        if override is not None:
            d = self.env.lookup.get(override)
            if d.characteristic is not None and d.characteristic == uuid:
                return d
        d2 = self.env.lookup.by_characteristic(uuid)
        if d2 is None or d2.transport != "ble":
            return None
        return d2

    def known(self) -> dict[str, Driver]:
        """Characteristics of this device that a registry driver decodes."""
        out: dict[str, Driver] = {}
        for uuid in sorted(self.chars):
            d = self.driver_for(uuid)
            if d is not None:
                out[uuid] = d
        return out

    # -- notifications --------------------------------------------------------------------------
    async def subscribe(
        self,
        uuid: str,
        driver: Driver | None,
        handler: Callable[[Subscription, bytes], Awaitable[None]] | None = None,
    ) -> bool:
        """Enable notifications/indications; records go to the sink (or ``handler``)."""
        framer = driver.framer() if driver is not None and driver.framer is not None else None
        sub = Subscription(uuid, driver, framer)
        handle = handler or self._store

        async def on_data(data: bytes) -> None:
            try:
                await handle(sub, data)
            except OutboxFull as exc:
                # Not confirmed (the handler raises): the device keeps the record.
                self.failed = exc
                raise

        try:
            await self.link.start_notify(uuid, on_data)
        except TransportError as exc:
            self.env.state.count("ble.subscribe_failed")
            log.info("%s: cannot subscribe to %s: %s", self.binding.device_id, uuid, exc)
            return False
        self.subscriptions[uuid] = sub
        return True

    async def _store(self, sub: Subscription, data: bytes) -> None:
        assert sub.driver is not None
        self.sink.handle_bytes(sub.driver, bytes(data), sub.framer)

    async def subscribe_known(self) -> int:
        """Subscribe to every known characteristic except battery (read instead)."""
        n = 0
        for uuid, driver in self.known().items():
            if driver.kind is Kind.DEVICE:
                continue
            n += await self.subscribe(uuid, driver)
        return n

    async def write_start_commands(self) -> int:
        """The stream-start writes of the subscribed drivers (Contec CMS50D-BT: ``9B 01 1C`` to
        0xFF01); a failed write is counted and logged, the session goes on (no data will come)."""
        n = 0
        for sub in self.subscriptions.values():
            start = sub.driver.start_write if sub.driver is not None else None
            if start is None or start[0] not in self.chars:
                continue
            try:
                await self.link.write(start[0], start[1], response=True, timeout=self.timeout)
            except TransportError as exc:
                self.env.state.count("ble.start_write_failed")
                log.warning("%s: stream start write failed: %s", self.binding.device_id, exc)
                continue
            n += 1
        return n

    # -- clock ----------------------------------------------------------------------------------
    async def set_clock_early(self) -> bool:
        """Current Time 0x2A2B, before subscribing: a CTS device's records then all arrive after
        its clock was set (``time_source="device"``)."""
        if CURRENT_TIME not in self.chars:
            return False
        payload = encode_current_time(now_local(self.env.config.tz))
        return await self._write_clock(CURRENT_TIME, payload, optimistic=False)

    async def set_clock_late(self) -> bool:
        """Date Time 0x2A08 after subscribing (A&D: the write starts the upload, so the device
        must find its indications enabled). The upload it triggers can arrive before the write
        response does, so the clock counts as set from the moment the write is sent, and is
        un-set if the write fails."""
        if self.sink.clock_set_by_hub:
            return True
        if DATE_TIME not in self.chars:
            self.env.state.count("ble.clock_not_set")
            return False
        payload = encode_date_time(device_time_from(now_local(self.env.config.tz)))
        ok = await self._write_clock(DATE_TIME, payload, optimistic=True)
        if not ok:
            self.env.state.count("ble.clock_not_set")
        return ok

    async def _write_clock(self, uuid: str, payload: bytes, *, optimistic: bool) -> bool:
        remaining = self.connected_at + self.env.config.ble.clock_deadline - time.monotonic()
        if remaining <= 0:
            self.env.state.count("ble.clock_deadline_missed")
            log.warning("%s: no time left to set the device clock", self.binding.device_id)
            return False
        if optimistic:
            self.sink.clock_set_by_hub = True
        try:
            await self.link.write(
                uuid, payload, response=True, timeout=min(self.timeout, remaining)
            )
        except TransportError as exc:
            self.sink.clock_set_by_hub = False
            self.env.state.count("ble.clock_write_failed")
            log.info("%s: clock write to %s failed: %s", self.binding.device_id, uuid, exc)
            return False
        self.sink.clock_set_by_hub = True
        self.env.state.count("ble.clock_set")
        return True

    # -- battery --------------------------------------------------------------------------------
    async def read_battery(self) -> None:
        if BATTERY_LEVEL not in self.chars:
            return
        driver = self.driver_for(BATTERY_LEVEL)
        if driver is None:
            return
        try:
            data = await self.link.read(BATTERY_LEVEL, self.timeout)
        except TransportError as exc:
            log.debug("%s: battery read failed: %s", self.binding.device_id, exc)
            return
        self.sink.handle_bytes(driver, data)

    # -- waiting --------------------------------------------------------------------------------
    async def wait_end(self, stop: asyncio.Event, idle_timeout: float | None) -> str:
        """Until the device disconnects ("disconnected"), ``stop`` ("stopped") or no record for
        ``idle_timeout`` seconds ("idle")."""
        gone = asyncio.ensure_future(self.link.wait_disconnected())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while True:
                timeout = None
                if idle_timeout is not None:
                    timeout = self.sink.last_activity + idle_timeout - time.monotonic()
                    if timeout <= 0:
                        return "idle"
                done, _ = await asyncio.wait(
                    {gone, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    return "disconnected"
                if stopped in done:
                    return "stopped"
        finally:
            for f in (gone, stopped):
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError, TransportError):
                    await f
