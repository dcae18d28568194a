"""A&D UT-201BLE style thermometer: HTS 0x1809, Temperature Measurement 0x2A1C (indicate).

Sends °C as FLOAT with one decimal (mantissa 367, exponent -1 = 36.7), a time stamp and the
temperature type (1 armpit for the UT-201BLE) [M: flags not confirmed against a capture]. An
invalid reading is FLOAT NaN 0x007FFFFF.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.observation import DeviceTime, Special
from drivers.thermometer import (
    MEASUREMENT_UUID,
    SERVICE,
    TYPE_UUID,
    TemperatureRecord,
    TemperatureType,
)
from simulators.ble.gatt import Characteristic, Prop
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import DeviceInfo, StoredReading, TimeSync
from simulators.devices.spot import SpotCheckDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

ARMPIT = 1


class Thermometer(SpotCheckDevice[TemperatureRecord]):
    """A storing thermometer that uploads like A&D devices do."""

    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        temperature_type: int = ARMPIT,
        static_type: bool = False,
        time_sync: TimeSync = TimeSync.DATE_TIME,
        resend_history: bool = False,
        stay_connected: bool = False,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        # ``static_type``: the type is the characteristic 0x2A1D instead of a measurement field.
        self.temperature_type = temperature_type
        self.static_type = static_type
        serial = address.replace(":", "")[-6:].upper()
        extra = (
            (Characteristic(TYPE_UUID, Prop.READ, TemperatureType(temperature_type).encode()),)
            if static_type
            else ()
        )
        super().__init__(
            address,
            name=name or f"A&D_UT-201BLE_{serial}",
            service_uuid=SERVICE,
            measurement_uuid=MEASUREMENT_UUID,
            info=DeviceInfo("A&D Medical", "UT-201BLE", serial),
            physiology=physiology,
            world=world,
            extra_characteristics=extra,
            time_sync=time_sync,
            resend_history=resend_history,
            stay_connected=stay_connected,
            clock=clock,
            faults=faults,
        )

    def take_reading(self, celsius: Decimal | None = None) -> StoredReading[TemperatureRecord]:
        def build(n: int, t: DeviceTime, invalid: bool) -> TemperatureRecord:
            value: Decimal | Special = (
                Special.NAN
                if invalid
                else (celsius if celsius is not None else self.physiology.temperature_c(n))
            )
            kind = None if self.static_type else self.temperature_type
            return TemperatureRecord(False, value, t, kind)

        return self._take(build)
