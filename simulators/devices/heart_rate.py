"""Heart-rate strap: HRS 0x180D, Heart Rate Measurement 0x2A37 (notify, 1 Hz), Body Sensor
Location 0x2A38 (read, 1 = chest), Battery Level 0x2A19 (read + notify).

Each notification: uint8 heart rate, sensor contact detected (bits 3), RR intervals in 1/1024 s.
Invalid readings (fault): sensor contact "not detected" and heart rate 0, no RR intervals.
"""

from __future__ import annotations

from drivers.heart_rate import MEASUREMENT_UUID, SERVICE, HeartRateRecord
from edge.ble.transport import uuid16
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import SimTime
from simulators.devices.common import Battery, DeviceInfo
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

BODY_SENSOR_LOCATION = uuid16(0x2A38)
CHEST = 1
CONTACT_DETECTED = 3
CONTACT_NOT_DETECTED = 2


class HeartRateStrap(StreamingDevice):
    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        battery_level: int = 85,
        faults: Faults | None = None,
    ) -> None:
        self.physiology = physiology
        serial = address.replace(":", "")[-6:].upper()
        self.info = DeviceInfo("Simulated", "HR strap", serial)
        self.battery = Battery(battery_level, notify=True)
        services = [
            Service(
                SERVICE,
                (
                    Characteristic(MEASUREMENT_UUID, Prop.NOTIFY),
                    Characteristic(BODY_SENSOR_LOCATION, Prop.READ, bytes((CHEST,))),
                ),
            ),
            self.info.service(),
            self.battery.service,
        ]
        super().__init__(
            address,
            name or f"HRM {serial}",
            services,
            notify_uuid=MEASUREMENT_UUID,
            interval=1.0,
            world=world,
            faults=faults,
            advertised_services=[SERVICE],
        )

    def record(self, k: int) -> HeartRateRecord:
        if k in self.faults.invalid_readings:
            return HeartRateRecord(0, sensor_contact_bits=CONTACT_NOT_DETECTED)
        return HeartRateRecord(
            self.physiology.heart_rate(k),
            sensor_contact_bits=CONTACT_DETECTED,
            rr_intervals=self.physiology.rr_intervals(k),
        )

    def payload(self, k: int) -> bytes:
        return self.record(k).encode()

    async def set_battery(self, level: int) -> None:
        """Change the battery level and notify a subscribed central."""
        self.battery.level = level
        await self.notify(self.battery.characteristic.uuid, self.battery.encode())
