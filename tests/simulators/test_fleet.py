"""The demo fleet: bindings the edge and gateway can use, a patient that trips a threshold."""

from __future__ import annotations

import os
from decimal import Decimal

from drivers import registry
from drivers.observation import Kind
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.devices.spot import SpotCheckDevice
from simulators.fleet import Binding, demo_fleet
from simulators.physiology import Physiology, Profile
from tests.simulators.conftest import upload


def test_bindings_and_profiles() -> None:
    fleet = demo_fleet(5, seed=3)
    assert [p.profile for p in fleet.patients] == [
        Profile.HYPERTENSIVE_CRISIS,
        Profile.NORMAL,
        Profile.HYPOXIC_COPD,
        Profile.HEART_FAILURE,
        Profile.HYPERTENSIVE_CRISIS,
    ]
    addresses = [b.address for b in fleet.bindings]
    assert len(addresses) == len(set(addresses)) == len(fleet.radio.peripherals)
    assert fleet.bindings[:2] == (
        Binding(
            "C0:FE:00:00:00:01", "P001", "blood-pressure", ("2a35",), "ble", fleet.bindings[0].name
        ),
        Binding("C0:FE:00:00:00:02", "P001", "weight", ("2a9d",), "ble", fleet.bindings[1].name),
    )
    assert fleet.bindings[0].name == "A&D_UA-651BLE_000001"
    families = {(b.patient_id, b.family) for b in fleet.bindings}
    assert ("P003", "pulse-oximeter") in families and ("P002", "nonin-ble") in families
    assert ("P005", "jumper-ble") in families
    for b in fleet.bindings:
        for key in b.driver_keys:
            assert registry.get(key).transport == b.transport


def test_first_patient_trips_a_threshold_at_once() -> None:
    fleet = demo_fleet(3, seed=0)
    cuff = fleet.device("C0:FE:00:00:00:01")
    assert isinstance(cuff, SpotCheckDevice)
    (reading,) = cuff.memory
    systolic = registry.get("2a35").decode(reading.data).observations[0].quantity.value
    assert systolic is not None and systolic >= 180
    ox = fleet.device("C0:FE:00:02:00:03")
    assert isinstance(ox, PulseOximeter)
    spo2 = [
        registry.get("2a5f").decode(ox.payload(k)).observations[0].quantity.value for k in range(10)
    ]
    assert any(v is not None and v < 90 for v in spo2)


def test_deterministic_per_seed() -> None:
    def data(seed: int) -> list[bytes]:
        fleet = demo_fleet(4, seed=seed)
        out = []
        for p in fleet.patients:
            for dev in p.devices:
                if isinstance(dev, SpotCheckDevice):
                    out += [r.record.encode()[8:] for r in dev.memory]  # values after the stamp
        return out

    assert data(1) == data(1)
    assert data(1) != data(2)


async def test_every_spot_device_uploads_and_decodes() -> None:
    fleet = demo_fleet(4, seed=1, speed=50.0)
    assert fleet.take_readings() == 11  # 4 x (cuff, scale) + thermometer, meter, PLX
    try:
        for b in fleet.bindings:
            dev = fleet.device(b.address)
            if not isinstance(dev, SpotCheckDevice):
                continue
            got, link = await upload(fleet.radio, b.address, dev.measurement_uuid)
            assert link.disconnect_reason == "upload complete"
            decoded = [registry.get(b.driver_keys[0]).decode(x) for x in got]
            assert [m.raw for m in decoded] == [r.data for r in dev.memory]
            assert all(m.kind is Kind.SPOT for m in decoded)
    finally:
        await fleet.aclose()


async def test_serial_devices_start_and_close() -> None:
    fleet = demo_fleet(3, with_serial=True, speed=10.0)
    (b,) = [b for b in fleet.bindings if b.transport == "serial"]
    assert (b.patient_id, b.driver_keys) == ("P003", ("contec-cms50d",))
    await fleet.start()
    assert os.path.islink(b.address)
    await fleet.aclose()
    assert not os.path.exists(b.address)


def test_physiology_resolution_and_profiles() -> None:
    normal, htn = Physiology(Profile.NORMAL, 4), Physiology(Profile.HYPERTENSIVE_CRISIS, 4)
    hf = Physiology(Profile.HEART_FAILURE, 4)
    for n in range(50):
        w = normal.weight_kg(n)
        assert w % Decimal("0.1") == 0 and w.as_tuple().exponent == -3  # 0.1 kg scale, 0.005 unit
        bp = normal.blood_pressure(n)
        assert all(v == v.to_integral_value() for v in (bp.systolic, bp.diastolic, bp.mean))
        assert bp.diastolic < bp.mean < bp.systolic < 140
        assert htn.blood_pressure(n).systolic >= 180
        assert normal.temperature_c(n).as_tuple().exponent == -1
        assert 95 <= normal.oximetry(n).spo2 <= 99
    assert hf.weight_kg(3) - hf.weight_kg(0) >= Decimal(2)
    assert normal.blood_pressure(7) == Physiology(Profile.NORMAL, 4).blood_pressure(7)
