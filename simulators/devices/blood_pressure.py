"""A&D UA-651BLE style blood pressure monitor: BLS 0x1810, BPM 0x2A35 (indicate).

Captured UA-651BLE indications carry flags 0x16: mmHg, time stamp, pulse rate, measurement status
(no user ID); integer mmHg SFLOATs (exponent 0). Error records have systolic, diastolic, MAP and
pulse rate all NaN 0x07FF with a time stamp and status 0 - that is what ``invalid`` sends.
Optionally the cuff notifies Intermediate Cuff Pressure 0x2A36 while it inflates (BLS text: the
unused diastolic/MAP slots are NaN); it does so only when a central is connected and subscribed.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.blood_pressure import (
    BPM_UUID,
    FEATURE_UUID,
    ICP_UUID,
    SERVICE,
    BloodPressureFeature,
    BloodPressureRecord,
    BloodPressureStatus,
    IntermediateCuffPressureRecord,
)
from drivers.observation import DeviceTime, Special
from simulators.ble.gatt import Characteristic, Prop
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import DeviceInfo, StoredReading, TimeSync
from simulators.devices.spot import SpotCheckDevice
from simulators.faults import Faults
from simulators.physiology import BloodPressureValues, Physiology

FEATURE = BloodPressureFeature(
    body_movement_detection=True, cuff_fit_detection=True, irregular_pulse_detection=True
)
ICP_STEP = 10  # mmHg per Intermediate Cuff Pressure notification
ICP_INTERVAL = 0.5  # simulated seconds between ICP notifications
ICP_OVERSHOOT = 30  # the cuff inflates to systolic + 30 mmHg


class BloodPressureMonitor(SpotCheckDevice[BloodPressureRecord]):
    """A storing upper-arm cuff that uploads like A&D devices do."""

    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        time_sync: TimeSync = TimeSync.DATE_TIME,
        resend_history: bool = False,
        stay_connected: bool = False,
        intermediate_cuff_pressure: bool = False,
        user_id: int | None = None,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.user_id = user_id
        self.intermediate_cuff_pressure = intermediate_cuff_pressure
        serial = address.replace(":", "")[-6:].upper()
        extra = (Characteristic(ICP_UUID, Prop.NOTIFY),) if intermediate_cuff_pressure else ()
        super().__init__(
            address,
            name=name or f"A&D_UA-651BLE_{serial}",
            service_uuid=SERVICE,
            measurement_uuid=BPM_UUID,
            info=DeviceInfo("A&D Medical", "UA-651BLE", serial),
            physiology=physiology,
            world=world,
            feature=(FEATURE_UUID, FEATURE.encode()),
            extra_characteristics=extra,
            time_sync=time_sync,
            resend_history=resend_history,
            stay_connected=stay_connected,
            clock=clock,
            faults=faults,
        )

    def record(self, values: BloodPressureValues | None, t: DeviceTime) -> BloodPressureRecord:
        """The record the cuff sends for ``values`` at ``t`` (None: an all-NaN error record)."""
        if values is None:
            nan = Special.NAN
            return BloodPressureRecord(
                "mm[Hg]", nan, nan, nan, t, nan, self.user_id, BloodPressureStatus()
            )
        return BloodPressureRecord(
            "mm[Hg]",
            values.systolic,
            values.diastolic,
            values.mean,
            t,
            values.pulse_rate,
            self.user_id,
            BloodPressureStatus(),
        )

    def take_reading(
        self, values: BloodPressureValues | None = None
    ) -> StoredReading[BloodPressureRecord]:
        """A finished measurement (``values`` given, else the physiology's)."""

        def build(n: int, t: DeviceTime, invalid: bool) -> BloodPressureRecord:
            v = None if invalid else (values or self.physiology.blood_pressure(n))
            return self.record(v, t)

        return self._take(build)

    def icp_record(self, pressure: int) -> IntermediateCuffPressureRecord:
        nan = Special.NAN
        return IntermediateCuffPressureRecord("mm[Hg]", Decimal(pressure), nan, nan)

    async def measure(
        self, values: BloodPressureValues | None = None
    ) -> StoredReading[BloodPressureRecord]:
        """Inflate (ICP notifications if a subscribed central is there), then store the reading."""
        target = values or self.physiology.blood_pressure(self._ordinals)
        if self.intermediate_cuff_pressure and self.is_subscribed(ICP_UUID):
            top = int(target.systolic) + ICP_OVERSHOOT
            for pressure in range(0, top + 1, ICP_STEP):
                await self.notify(ICP_UUID, self.icp_record(pressure).encode())
                await self.world.sleep(ICP_INTERVAL)
        return self.take_reading(target)
