"""The simulated body-composition scale: exact bytes, and the spot-check upload over the radio."""

from __future__ import annotations

from decimal import Decimal

from drivers import registry
from drivers.body_composition import (
    MEASUREMENT_UUID,
    BodyCompositionFeature,
    BodyCompositionRecord,
)
from drivers.observation import DeviceTime, Special
from simulators.ble import SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.body_composition import BodyCompositionScale
from simulators.faults import Faults
from simulators.physiology import Physiology, Profile
from tests.simulators.conftest import CURRENT_TIME, upload

ADDR = "C0:00:00:00:00:0B"
PHYS = Physiology(Profile.HEART_FAILURE, 5)


def test_records_decode_to_the_generated_values() -> None:
    world = SimTime(speed=1.0)
    dev = BodyCompositionScale(ADDR, PHYS, world=world)
    for n in range(3):
        r = dev.take_reading()
        weight = PHYS.weight_kg(n)
        fat = (Decimal("18.0") + (weight - 70) * Decimal("0.3")).quantize(Decimal("0.1"))
        t = r.record.time_stamp
        assert isinstance(t, DeviceTime)
        assert BodyCompositionRecord.parse(r.data) == BodyCompositionRecord(
            imperial=False,
            body_fat=fat,
            time_stamp=t,
            body_water_mass=r.record.body_water_mass,
            impedance=Decimal("512.3"),
            weight=weight,
        )
        m = registry.get("2a9c").decode(r.data)
        by_mdc = {o.mdc: o.quantity for o in m.observations}
        assert (by_mdc[188748].value, by_mdc[188748].unit) == (fat, "%")
        assert (by_mdc[188736].value, by_mdc[188736].unit) == (weight, "kg")
    feature = BodyCompositionFeature.parse(dev.characteristic("2a9b").value)
    assert feature == BodyCompositionFeature(
        ("time_stamp", "body_water_mass", "impedance", "weight"), 3, 0
    )


def test_unsuccessful_measurement_is_body_fat_ffff() -> None:
    dev = BodyCompositionScale(
        ADDR, PHYS, world=SimTime(), faults=Faults(invalid_readings=frozenset({0}))
    )
    r = dev.take_reading()
    assert r.data[2:4] == b"\xff\xff"  # after the 16-bit flags
    assert BodyCompositionRecord.parse(r.data).body_fat is Special.UNSUCCESSFUL


async def test_uploads_after_the_current_time_write(radio: SimulatedRadio, world: SimTime) -> None:
    dev = BodyCompositionScale(ADDR, PHYS, world=world)
    radio.add(dev)
    taken = [dev.take_reading() for _ in range(2)]
    got, link = await upload(radio, ADDR, MEASUREMENT_UUID, time_char=CURRENT_TIME)
    assert [BodyCompositionRecord.parse(b) for b in got] == [r.record for r in taken]
    assert (link.disconnect_reason, dev.unsent) == ("upload complete", ())
