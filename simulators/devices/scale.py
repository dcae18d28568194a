"""A&D UC-352BLE style weight scale: WSS 0x181D, Weight Measurement 0x2A9D (indicate).

Captured UC-352BLE indications carry flags 0x02 (SI, time stamp; no user ID, no BMI) and weights
in 0.1 kg steps sent as uint16 x 0.005 kg. An unsuccessful weighing is 0xFFFF ("Measurement
Unsuccessful", reference §2.1) with its time stamp.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.observation import DeviceTime, Special
from drivers.weight import FEATURE_UUID, MEASUREMENT_UUID, SERVICE, WeightFeature, WeightRecord
from simulators.ble.gatt import Characteristic
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import DeviceInfo, StoredReading, TimeSync
from simulators.devices.spot import SpotCheckDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

#: Feature: time stamp supported, single user, no BMI, 0.1 kg resolution (code 3).
FEATURE = WeightFeature(time_stamp_supported=True, weight_resolution=3)


class WeightScale(SpotCheckDevice[WeightRecord]):
    """A storing weight scale that uploads like A&D devices do."""

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
        user_id: int | None = None,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
        extra_characteristics: tuple[Characteristic, ...] = (),
    ) -> None:
        self.user_id = user_id
        serial = address.replace(":", "")[-6:].upper()
        super().__init__(
            address,
            name=name or f"A&D_UC-352BLE_{serial}",
            service_uuid=SERVICE,
            measurement_uuid=MEASUREMENT_UUID,
            info=DeviceInfo("A&D Medical", "UC-352BLE", serial),
            physiology=physiology,
            world=world,
            feature=(FEATURE_UUID, FEATURE.encode()),
            extra_characteristics=extra_characteristics,
            time_sync=time_sync,
            resend_history=resend_history,
            stay_connected=stay_connected,
            clock=clock,
            faults=faults,
        )

    def take_reading(self, weight: Decimal | None = None) -> StoredReading[WeightRecord]:
        """The patient steps on the scale (``weight`` in kg, else the physiology's value)."""

        def build(n: int, t: DeviceTime, invalid: bool) -> WeightRecord:
            value: Decimal | Special = (
                Special.UNSUCCESSFUL
                if invalid
                else (weight if weight is not None else self.physiology.weight_kg(n))
            )
            return WeightRecord(imperial=False, weight=value, time_stamp=t, user_id=self.user_id)

        return self._take(build)
