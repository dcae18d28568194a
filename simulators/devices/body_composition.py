"""A body-composition scale: BCS 0x181B, Body Composition Measurement 0x2A9C (indicate).

Modelled on consumer BIA scales that expose the standard Body Composition Service (Beurer BF600
class): SI units, time stamp, body fat % (0.1 %), body water mass and weight (0.005 kg steps), and
impedance (0.1 Ohm). It stores readings and uploads them like the other spot-check devices; an
unsuccessful measurement is body fat 0xFFFF ("Measurement Unsuccessful").
"""

from __future__ import annotations

from decimal import Decimal

from drivers.body_composition import (
    FEATURE_UUID,
    MEASUREMENT_UUID,
    SERVICE,
    BodyCompositionFeature,
    BodyCompositionRecord,
)
from drivers.observation import DeviceTime, Special
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import DeviceInfo, StoredReading, TimeSync
from simulators.devices.spot import SpotCheckDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

#: Time stamp, body water, impedance and weight supported; mass resolution 0.1 kg (code 3).
FEATURE = BodyCompositionFeature(
    supported=("time_stamp", "body_water_mass", "impedance", "weight"), mass_resolution=3
)
_TENTH = Decimal("0.1")


class BodyCompositionScale(SpotCheckDevice[BodyCompositionRecord]):
    """A storing body-composition scale."""

    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        time_sync: TimeSync = TimeSync.CURRENT_TIME,
        resend_history: bool = False,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        serial = address.replace(":", "")[-6:].upper()
        super().__init__(
            address,
            name=name or f"BF600_{serial}",
            service_uuid=SERVICE,
            measurement_uuid=MEASUREMENT_UUID,
            info=DeviceInfo("Simulated BIA", "BCS-1", serial),
            physiology=physiology,
            world=world,
            feature=(FEATURE_UUID, FEATURE.encode()),
            time_sync=time_sync,
            resend_history=resend_history,
            clock=clock,
            faults=faults,
        )

    def take_reading(self) -> StoredReading[BodyCompositionRecord]:
        """The patient stands on the scale barefoot (values derived from the physiology)."""

        def build(n: int, t: DeviceTime, invalid: bool) -> BodyCompositionRecord:
            weight = self.physiology.weight_kg(n)
            # Body fat and water follow weight deterministically, at the device's resolution.
            fat = (Decimal("18.0") + (weight - Decimal(70)) * Decimal("0.3")).quantize(_TENTH)
            water = (weight * Decimal("0.55") / Decimal("0.005")).to_integral_value() * Decimal(
                "0.005"
            )
            return BodyCompositionRecord(
                imperial=False,
                body_fat=Special.UNSUCCESSFUL if invalid else fat,
                time_stamp=t,
                body_water_mass=None if invalid else water,
                impedance=None if invalid else Decimal("512.3"),
                weight=None if invalid else weight,
            )

        return self._take(build)
