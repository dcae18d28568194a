"""Nonin 3230 (WristOx/finger clip) BLE: vendor Oximetry Measurement notifications at 1 Hz.

Service ``46A970E0-…``, notify ``0AAD7EA0-…`` (10 octets, big-endian fields, reference §6.1),
control point ``1447AF80-…`` (write; accepted and ignored). Advertised name
``Nonin3230_<serial>``. The first ``search_seconds`` notifications say "searching" with the missing
markers (SpO2 127, PR 511); then "correct-check" (finger placed), and from ``smartpoint_after``
on "smartpoint" (the reading passed Nonin's quality check). Invalid readings (fault) are the
missing markers with "searching".
"""

from __future__ import annotations

from drivers.nonin import (
    NONIN_CONTROL_POINT,
    NONIN_OXIMETRY_MEASUREMENT,
    NONIN_SERVICE,
    PR_MISSING,
    NoninBleRecord,
)
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import SimTime
from simulators.devices.common import Battery, DeviceInfo, noop_write
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

SPO2_MISSING = 127


class Nonin3230(StreamingDevice):
    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        serial: str = "501234567",
        search_seconds: int = 2,
        smartpoint_after: int = 6,
        battery_decivolts: int = 29,
        faults: Faults | None = None,
    ) -> None:
        self.physiology = physiology
        self.search_seconds = search_seconds
        self.smartpoint_after = smartpoint_after
        self.battery_decivolts = battery_decivolts
        self.info = DeviceInfo("Nonin Medical, Inc.", "3230", serial)
        services = [
            Service(
                NONIN_SERVICE,
                (
                    Characteristic(NONIN_OXIMETRY_MEASUREMENT, Prop.NOTIFY),
                    Characteristic(NONIN_CONTROL_POINT, Prop.WRITE, on_write=noop_write()),
                ),
            ),
            self.info.service(),
            Battery(95).service,
        ]
        super().__init__(
            address,
            f"Nonin3230_{serial}",
            services,
            notify_uuid=NONIN_OXIMETRY_MEASUREMENT,
            interval=1.0,
            world=world,
            faults=faults,
            advertised_services=[NONIN_SERVICE],
        )

    def record(self, k: int) -> NoninBleRecord:
        """Notification ``k``: second ``k`` of the measurement (the counter)."""
        counter = k & 0xFFFF
        if k < self.search_seconds or k in self.faults.invalid_readings:
            return NoninBleRecord(
                ("searching",), self.battery_decivolts, 0, counter, SPO2_MISSING, PR_MISSING
            )
        v = self.physiology.oximetry(k)
        # Status names in bit order (smartpoint b2, correct-check b4), as the parser returns them.
        smart = k >= self.smartpoint_after
        status = ("smartpoint", "correct-check") if smart else ("correct-check",)
        pai = int(v.pai.scaleb(2))  # 0.01 % units
        return NoninBleRecord(
            status, self.battery_decivolts, pai, counter, int(v.spo2), int(v.pulse_rate)
        )

    def payload(self, k: int) -> bytes:
        return self.record(k).encode()
