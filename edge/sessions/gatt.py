"""GATT building blocks shared by the BLE procedures: clock, subscriptions, battery, waiting.

Order on every connection (reference §6.5, §8.8): connect -> discover -> enable notifications and
indications on every characteristic the registry knows -> set the device clock (Current Time
0x2A2B if the device has it, else Date Time 0x2A08 as A&D devices expose it), all within
``clock_deadline`` of connecting. Subscribing first matters for A&D: the device starts its upload
when the clock is written, and the records must not arrive before the central listens. A record
that arrives before the clock write is acknowledged is stamped ``device-unverified``.
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

    # -- clock ----------------------------------------------------------------------------------
    async def set_clock(self) -> bool:
        """Write the hub's local wall-clock time to the device, before ``clock_deadline``."""
        deadline = self.connected_at + self.env.config.ble.clock_deadline
        now = now_local(self.env.config.tz)
        attempts: list[tuple[str, bytes]] = []
        if CURRENT_TIME in self.chars:
            attempts.append((CURRENT_TIME, encode_current_time(now)))
        if DATE_TIME in self.chars:
            attempts.append((DATE_TIME, encode_date_time(device_time_from(now))))
        for uuid, payload in attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.env.state.count("ble.clock_deadline_missed")
                log.warning("%s: no time left to set the device clock", self.binding.device_id)
                break
            try:
                await self.link.write(
                    uuid, payload, response=True, timeout=min(self.timeout, remaining)
                )
            except TransportError as exc:
                log.info("%s: clock write to %s failed: %s", self.binding.device_id, uuid, exc)
                continue
            self.sink.clock_set_by_hub = True
            self.env.state.count("ble.clock_set")
            return True
        self.env.state.count("ble.clock_not_set")
        return False

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
