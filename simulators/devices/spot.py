"""Spot-check devices that store readings and upload them on connect (A&D UA-651BLE style).

Behaviour (reference §6.5):

1. A measurement is stored in memory (bounded; the oldest is evicted when full) and the device
   advertises while it holds unsent readings.
2. On connect it waits up to ``upload_wait`` (5 s simulated) for the central to write the time
   (Date Time 0x2A08 and/or Current Time 0x2A2B) *and* enable indications on the measurement
   characteristic. If either is missing it disconnects: nothing is sent.
3. It then indicates every unsent reading oldest first, one at a time, each confirmed before the
   next; a reading is marked sent only after its confirmation. With ``resend_history`` it sends
   its whole memory every time (A&D re-sends old readings).
4. It disconnects by itself (unless ``stay_connected``, a generic live device that keeps sending
   new readings while the central stays).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic

from drivers.observation import DeviceTime
from edge.ble.transport import normalize_uuid
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.ble.peripheral import Peripheral
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import (
    Battery,
    DeviceInfo,
    R,
    StoredReading,
    TimeCharacteristics,
    TimeSync,
    noop_write,
)
from simulators.faults import Faults
from simulators.physiology import Physiology

log = logging.getLogger(__name__)

AND_VENDOR_SERVICE = "233bf000-5a34-1b6d-975c-000d5690abe4"
AND_VENDOR_CHAR = "233bf001-5a34-1b6d-975c-000d5690abe4"

#: Build the record for reading ``ordinal`` taken at device time ``t``; ``invalid`` = fault.
RecordBuilder = Callable[[int, DeviceTime, bool], R]


class SpotCheckDevice(Peripheral, Generic[R]):
    """A storing spot-check device; families subclass it and add ``take_reading``."""

    def __init__(
        self,
        address: str,
        *,
        name: str,
        service_uuid: str,
        measurement_uuid: str,
        info: DeviceInfo,
        physiology: Physiology,
        world: SimTime | None = None,
        feature: tuple[str, bytes] | None = None,
        extra_characteristics: Sequence[Characteristic] = (),
        time_sync: TimeSync = TimeSync.DATE_TIME,
        resend_history: bool = False,
        stay_connected: bool = False,
        memory_size: int = 30,
        upload_wait: float = 5.0,
        battery_level: int | None = 100,
        vendor_service: bool = True,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        world = world if world is not None else SimTime()
        self.physiology = physiology
        self.measurement_uuid = normalize_uuid(measurement_uuid)
        self.resend_history = resend_history
        self.stay_connected = stay_connected
        self.memory_size = memory_size
        self.upload_wait = upload_wait
        self.faults = faults if faults is not None else Faults()
        self.clock = clock if clock is not None else DeviceClock(world)
        self.info = info
        self._memory: list[StoredReading[R]] = []
        self._ordinals = 0
        self.evicted = 0
        self.confirmed: list[int] = []  # ordinals in the order centrals confirmed them
        self._time_written = False
        self._new_reading = asyncio.Event()
        self.time = TimeCharacteristics(
            self.clock, time_sync, self._time_write, lambda: self.faults.ignore_time_write
        )
        chars: list[Characteristic] = [Characteristic(measurement_uuid, Prop.INDICATE)]
        if feature is not None:
            chars.append(Characteristic(feature[0], Prop.READ, feature[1]))
        chars.extend(extra_characteristics)
        if self.time.date_time is not None:
            chars.append(self.time.date_time)
        services = [Service(service_uuid, tuple(chars)), info.service()]
        cts = self.time.cts_service()
        if cts is not None:
            services.append(cts)
        self.battery = Battery(battery_level) if battery_level is not None else None
        if self.battery is not None:
            services.append(self.battery.service)
        if vendor_service:
            vendor = Characteristic(AND_VENDOR_CHAR, Prop.READ | Prop.WRITE, on_write=noop_write())
            services.append(Service(AND_VENDOR_SERVICE, (vendor,)))
        super().__init__(address, name, services, world=world, advertised_services=[service_uuid])

    # -- memory -----------------------------------------------------------------------------------
    @property
    def memory(self) -> tuple[StoredReading[R], ...]:
        return tuple(self._memory)

    @property
    def unsent(self) -> tuple[StoredReading[R], ...]:
        return tuple(r for r in self._memory if not r.sent)

    def take_reading(self) -> StoredReading[R]:
        """The patient measures (values from the physiology); families add a values argument."""
        raise NotImplementedError

    def _take(self, build: RecordBuilder[R]) -> StoredReading[R]:
        """Take a reading now (device clock) and keep it; start advertising."""
        n = self._ordinals
        self._ordinals += 1
        if self.faults.clock_reset_before == n:
            self.clock.reset()
        record = build(n, self.clock.device_time(), n in self.faults.invalid_readings)
        reading = StoredReading(n, record, self.faults.truncate(n, record.encode()))
        self._memory.append(reading)
        while len(self._memory) > self.memory_size:
            self._memory.pop(0)
            self.evicted += 1
        self._new_reading.set()
        if not self.connected:
            self.start_advertising()
        return reading

    # -- connection -------------------------------------------------------------------------------
    def _time_write(self) -> None:
        self._time_written = True

    def on_connect(self) -> None:
        self._time_written = False
        self.spawn(self._session(), "upload")

    def on_disconnect(self, reason: str) -> None:
        if self.unsent:
            self.start_advertising()
        else:
            self.stop_advertising()

    def _ready(self) -> bool:
        return self._time_written and self.is_subscribed(self.measurement_uuid)

    async def _session(self) -> None:
        if not await self.wait_until(self._ready, self.upload_wait):
            log.info("%s: no time write/indication within %s s", self.address, self.upload_wait)
            await self.disconnect("no time write")
            return
        done: set[int] = set()
        sent = 0  # records confirmed on this connection
        attempts = 0
        while True:
            pending = [
                r
                for r in self._memory
                if r.ordinal not in done and (self.resend_history or not r.sent)
            ]
            if not pending:
                if not self.stay_connected:
                    break
                self._new_reading.clear()
                await self._new_reading.wait()
                continue
            reading = pending[0]
            if self.faults.disconnect_after is not None and sent >= self.faults.disconnect_after:
                await self.disconnect("fault: disconnect mid-transfer")
                return
            copies = 2 if self.faults.duplicate else 1
            for _ in range(copies):
                cut = self.faults.cut_during == attempts
                attempts += 1
                if not await self.indicate(self.measurement_uuid, reading.data, cut_link=cut):
                    return  # link gone: the reading stays (un)sent as it was
                reading.sent = True
                reading.deliveries += 1
                self.confirmed.append(reading.ordinal)
            done.add(reading.ordinal)
            sent += 1
        await self.disconnect("upload complete")
