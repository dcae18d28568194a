"""PLXS pulse oximeter (0x1822): continuous 0x2A5F notifications at 1 Hz, spot-check 0x2A5E
indications, PLX Features 0x2A60.

* Continuous: while a central is subscribed to 0x2A5F, one notification per simulated second:
  SpO2PR-Normal and the Pulse Amplitude Index (integer %, integer bpm, PAI one decimal). Sample
  ``k`` of the device's life carries ``physiology.oximetry(k)``.
* Spot-check: :meth:`PulseOximeter.take_spot_check` queues a record (with a time stamp from the
  device clock); queued records are indicated oldest first once the central subscribed to 0x2A5E,
  each marked sent only after its confirmation, so an unconfirmed one is sent again next time.
  [M: PLXS devices with storage use RACP; this model keeps it to indications.]
* ``clock_set=False``: flag b4 "device clock is not set" and a time stamp from the unset clock
  (2000-01-01 onwards), until a central writes Current Time (``time_sync``).
* Invalid values: SpO2 and PR are SFLOAT NaN (reference §8.10: PLX uses NaN).

Fault ordinals count continuous samples and spot-checks separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.observation import DeviceTime, Special
from drivers.pulse_oximeter import (
    CONTINUOUS_UUID,
    FEATURES_UUID,
    SERVICE,
    SPOT_UUID,
    PlxContinuousRecord,
    PlxFeatures,
    PlxSpotCheckRecord,
    SpO2PR,
)
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import Battery, DeviceInfo, TimeCharacteristics, TimeSync
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import OximetryValues, Physiology

FEATURES = PlxFeatures(spot_check_timestamp=True, pulse_amplitude_index=True)
MAX_QUEUED = 16  # spot-checks a device keeps while nobody listens


@dataclass(slots=True)
class QueuedSpotCheck:
    ordinal: int
    record: PlxSpotCheckRecord
    data: bytes
    sent: bool = False


class PulseOximeter(StreamingDevice):
    """A PLXS finger oximeter."""

    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        interval: float = 1.0,
        clock_set: bool = True,
        time_sync: TimeSync | None = TimeSync.CURRENT_TIME,
        battery_level: int | None = 90,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        world = world if world is not None else SimTime()
        self.physiology = physiology
        faults = faults if faults is not None else Faults()
        self.clock = clock if clock is not None else DeviceClock(world, is_set=clock_set)
        self._spots: list[QueuedSpotCheck] = []
        self._spot_ordinals = 0
        serial = address.replace(":", "")[-6:].upper()
        self.info = DeviceInfo("Simulated", "PLX oximeter", serial)
        chars = [
            Characteristic(SPOT_UUID, Prop.INDICATE),
            Characteristic(CONTINUOUS_UUID, Prop.NOTIFY),
            Characteristic(FEATURES_UUID, Prop.READ, FEATURES.encode()),
        ]
        services = [Service(SERVICE, tuple(chars)), self.info.service()]
        self.time: TimeCharacteristics | None = None
        if time_sync is not None:
            self.time = TimeCharacteristics(
                self.clock, time_sync, lambda: None, lambda: faults.ignore_time_write
            )
            if self.time.date_time is not None:
                services[0] = Service(SERVICE, (*chars, self.time.date_time))
            cts = self.time.cts_service()
            if cts is not None:
                services.append(cts)
        self.battery = Battery(battery_level) if battery_level is not None else None
        if self.battery is not None:
            services.append(self.battery.service)
        super().__init__(
            address,
            name or f"PLX {serial}",
            services,
            notify_uuid=CONTINUOUS_UUID,
            interval=interval,
            world=world,
            faults=faults,
            advertised_services=[SERVICE],
        )

    # -- records ----------------------------------------------------------------------------------
    def continuous_record(self, k: int) -> PlxContinuousRecord:
        """The continuous record of sample ``k`` (faults applied to the values)."""
        if k in self.faults.invalid_readings:
            return PlxContinuousRecord(SpO2PR(Special.NAN, Special.NAN))
        v = self.physiology.oximetry(k)
        return PlxContinuousRecord(SpO2PR(v.spo2, v.pulse_rate), pulse_amplitude_index=v.pai)

    def spot_record(self, values: OximetryValues | None, t: DeviceTime) -> PlxSpotCheckRecord:
        if values is None:
            pair = SpO2PR(Special.NAN, Special.NAN)
            return PlxSpotCheckRecord(pair, t, clock_not_set=not self.clock.is_set)
        return PlxSpotCheckRecord(
            SpO2PR(values.spo2, values.pulse_rate),
            t,
            pulse_amplitude_index=values.pai,
            clock_not_set=not self.clock.is_set,
        )

    def take_spot_check(self, values: OximetryValues | None = None) -> PlxSpotCheckRecord:
        """The patient takes a spot-check; it is indicated as soon as a central listens."""
        n = self._spot_ordinals
        self._spot_ordinals += 1
        if self.faults.clock_reset_before == n:
            self.clock.reset()
        invalid = n in self.faults.invalid_readings
        record = self.spot_record(
            None if invalid else (values or self.physiology.spot_oximetry(n)),
            self.clock.device_time(),
        )
        self._spots.append(QueuedSpotCheck(n, record, self.faults.truncate(n, record.encode())))
        del self._spots[:-MAX_QUEUED]
        if self.connection is not None:
            self.connection.changed.set()  # wake the spot-check sender
        return record

    @property
    def unsent_spot_checks(self) -> tuple[PlxSpotCheckRecord, ...]:
        return tuple(q.record for q in self._spots if not q.sent)

    # -- connection -------------------------------------------------------------------------------
    def payload(self, k: int) -> bytes:
        return self.continuous_record(k).encode()

    def on_connect(self) -> None:
        super().on_connect()
        self.spawn(self._spot_checks(), "spot-check")

    async def _spot_checks(self) -> None:
        attempts = 0
        while self.connected:
            if not await self.wait_until(
                lambda: self.is_subscribed(SPOT_UUID) and any(not q.sent for q in self._spots),
                self.interval,
            ):
                continue
            queued = next(q for q in self._spots if not q.sent)
            for _ in range(2 if self.faults.duplicate else 1):
                cut = self.faults.cut_during == attempts
                attempts += 1
                if not await self.indicate(SPOT_UUID, queued.data, cut_link=cut):
                    return
                queued.sent = True
