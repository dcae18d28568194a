"""Every simulated device's bytes decode with the drivers to exactly what the generator produced."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from drivers import registry
from drivers.battery import BatteryLevelRecord
from drivers.blood_pressure import BloodPressureFeature, BloodPressureRecord, BloodPressureStatus
from drivers.contec import ContecFrame, ContecFramer
from drivers.errors import DecodeError
from drivers.glucose import GlucoseRecord
from drivers.heart_rate import HeartRateRecord
from drivers.jumper import JumperFramer, JumperParams
from drivers.nonin import NoninBleRecord
from drivers.observation import DeviceTime, Measurement, Special
from drivers.pulse_oximeter import PlxContinuousRecord, PlxFeatures, PlxSpotCheckRecord, SpO2PR
from drivers.thermometer import TemperatureRecord
from drivers.weight import WeightFeature, WeightRecord
from simulators.clock import DeviceClock, SimTime
from simulators.devices.berrymed import BerryMedOximeter
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.glucose import GlucoseMeter
from simulators.devices.heart_rate import HeartRateStrap
from simulators.devices.jumper import JumperOximeter
from simulators.devices.nonin import Nonin3230
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.devices.scale import WeightScale
from simulators.devices.thermometer import Thermometer
from simulators.faults import Faults
from simulators.physiology import Physiology, Profile

ADDR = "C0:00:00:00:00:02"


@pytest.fixture
def world() -> SimTime:
    """Real-time speed: time stamps computed here and by a device agree to the second."""
    return SimTime(speed=1.0)


@pytest.fixture(params=list(Profile))
def phys(request: pytest.FixtureRequest) -> Physiology:
    return Physiology(request.param, 11)


def decode(key: str, data: bytes) -> Measurement:
    return registry.get(key).decode(data)


def values(m: Measurement) -> list[Decimal | None]:
    return [o.quantity.value for o in m.observations]


def test_scale(phys: Physiology, world: SimTime) -> None:
    dev = WeightScale(ADDR, phys, world=world)
    for n in range(4):
        r = dev.take_reading()
        assert WeightRecord.parse(r.data) == WeightRecord(False, phys.weight_kg(n), _t(world))
        assert values(decode("2a9d", r.data)) == [phys.weight_kg(n)]
        assert str(WeightRecord.parse(r.data).weight) == str(phys.weight_kg(n))
    feature = dev.characteristic("2a9e").value
    assert WeightFeature.parse(feature) == WeightFeature(True, False, False, 3, 0)
    assert WeightFeature.parse(feature).weight_step() == Decimal("0.1")


def _t(world: SimTime) -> DeviceTime:
    """The device time of a reading taken just now by a device with a correct clock."""
    t = world.now()
    return DeviceTime(t.year, t.month, t.day, t.hour, t.minute, t.second)


def test_blood_pressure(phys: Physiology, world: SimTime) -> None:
    dev = BloodPressureMonitor(ADDR, phys, world=world)
    for n in range(4):
        r = dev.take_reading()
        v = phys.blood_pressure(n)
        assert BloodPressureRecord.parse(r.data) == BloodPressureRecord(
            "mm[Hg]",
            v.systolic,
            v.diastolic,
            v.mean,
            r.record.time_stamp,
            v.pulse_rate,
            None,
            BloodPressureStatus(),
        )
        assert r.data[0] == 0x16  # the UA-651BLE's flags: time stamp, pulse rate, status
        assert values(decode("2a35", r.data)) == [v.systolic, v.diastolic, v.mean, v.pulse_rate]
    assert BloodPressureFeature.parse(dev.characteristic("2a49").value) == BloodPressureFeature(
        True, True, True
    )


def test_thermometer(phys: Physiology, world: SimTime) -> None:
    dev = Thermometer(ADDR, phys, world=world)
    r = dev.take_reading()
    assert TemperatureRecord.parse(r.data) == TemperatureRecord(
        False, phys.temperature_c(0), r.record.time_stamp, 1
    )
    m = decode("2a1c", r.data)
    assert (values(m), str(values(m)[0])) == ([phys.temperature_c(0)], str(phys.temperature_c(0)))
    static = Thermometer(ADDR, phys, world=world, static_type=True, temperature_type=6)
    r2 = static.take_reading(Decimal("38.4"))
    assert TemperatureRecord.parse(r2.data) == TemperatureRecord(
        False, Decimal("38.4"), r2.record.time_stamp, None
    )
    assert static.characteristic("2a1d").value == b"\x06"
    bad = Thermometer(ADDR, phys, world=world, faults=Faults(invalid_readings=frozenset({0})))
    assert TemperatureRecord.parse(bad.take_reading().data).temperature is Special.NAN


def test_pulse_oximeter(phys: Physiology, world: SimTime) -> None:
    dev = PulseOximeter(ADDR, phys, world=world)
    for k in range(70):
        v = phys.oximetry(k)
        assert PlxContinuousRecord.parse(dev.payload(k)) == PlxContinuousRecord(
            SpO2PR(v.spo2, v.pulse_rate), pulse_amplitude_index=v.pai
        )
    spot = dev.take_spot_check()
    v = phys.spot_oximetry(0)
    assert PlxSpotCheckRecord.parse(spot.encode()) == PlxSpotCheckRecord(
        SpO2PR(v.spo2, v.pulse_rate), spot.time_stamp, pulse_amplitude_index=v.pai
    )
    assert values(decode("2a5e", spot.encode())) == [v.spo2, v.pulse_rate, v.pai]
    assert PlxFeatures.parse(dev.characteristic("2a60").value) == PlxFeatures(
        spot_check_timestamp=True, pulse_amplitude_index=True
    )


def test_pulse_oximeter_clock_not_set_and_nan(world: SimTime) -> None:
    phys = Physiology(Profile.NORMAL, 1)
    dev = PulseOximeter(
        ADDR, phys, world=world, clock_set=False, faults=Faults(invalid_readings=frozenset({1}))
    )
    first = dev.take_spot_check()
    assert first.clock_not_set and first.time_stamp is not None
    assert (first.time_stamp.year, first.time_stamp.month, first.time_stamp.day) == (2000, 1, 1)
    m = decode("2a5e", first.encode())
    assert m.clock_set is False
    invalid = dev.take_spot_check()
    assert invalid.spo2pr == SpO2PR(Special.NAN, Special.NAN)
    assert PlxContinuousRecord.parse(dev.payload(1)).normal == SpO2PR(Special.NAN, Special.NAN)


def test_glucose_records(phys: Physiology, world: SimTime) -> None:
    dev = GlucoseMeter(ADDR, phys, world=world, first_sequence=41)
    rec = dev.take_reading()
    t = rec.base_time
    expected_kg_l = phys.glucose_mg_dl(0).scaleb(-5)
    assert GlucoseRecord.parse(dev._data[41]) == GlucoseRecord(
        41, t, 0, expected_kg_l, "kg/L", 1, 1
    )
    m = decode("2a18", dev._data[41])
    assert (m.sequence, values(m)) == (41, [phys.glucose_mg_dl(0)])
    control = dev.take_reading(Decimal(120), control=True)
    assert (control.sequence_number, control.is_control) == (42, True)
    assert decode("2a18", control.encode()).kind.value == "control"


def test_nonin_3230(phys: Physiology, world: SimTime) -> None:
    dev = Nonin3230(ADDR, phys, world=world)
    assert dev.name == "Nonin3230_501234567"
    assert NoninBleRecord.parse(dev.payload(0)) == NoninBleRecord(
        ("searching",), 29, 0, 0, 127, 511
    )
    assert values(decode("nonin-ble", dev.payload(0)))[:2] == [None, None]
    for k in (2, 7, 300):
        v = phys.oximetry(k)
        status = ("correct-check",) if k < 6 else ("smartpoint", "correct-check")
        rec = NoninBleRecord(status, 29, int(v.pai * 100), k, int(v.spo2), int(v.pulse_rate))
        assert NoninBleRecord.parse(dev.payload(k)) == rec
        assert dev.payload(k)[8:10] == int(v.pulse_rate).to_bytes(2, "big")  # big-endian
        assert values(decode("nonin-ble", dev.payload(k))) == [v.spo2, v.pulse_rate, v.pai]


def test_jumper_stream(phys: Physiology, world: SimTime) -> None:
    dev = JumperOximeter(ADDR, phys, world=world, faults=Faults(invalid_readings=frozenset({4})))
    assert dev.payload(0) == b"\x2d" * 8
    framer = JumperFramer()
    got = [x for k in range(6) for x in framer.feed(dev.payload(k))]
    expected = []
    for k in (2, 3, 5):
        v = phys.oximetry(k)
        expected.append(JumperParams(int(v.pulse_rate), int(v.spo2), int(v.pai * 10)))
    expected.insert(2, JumperParams(255, 127, 0))
    assert [x for x in got if isinstance(x, DecodeError)] == []
    assert [JumperParams.parse(m.raw) for m in got if isinstance(m, Measurement)] == expected


def test_berrymed_stream(phys: Physiology, world: SimTime) -> None:
    dev = BerryMedOximeter(ADDR, phys, world=world, search_notifications=1)
    framer = ContecFramer("berrymed-ble")
    results = [x for k in range(31) for x in framer.feed(dev.payload(k))]
    assert all(isinstance(x, Measurement) for x in results)
    frames = [ContecFrame.parse(m.raw) for m in results if isinstance(m, Measurement)]
    assert frames == [f for k in range(31) for f in dev.frames(k)]
    assert len(frames) == 124 and len(dev.payload(5)) == 20
    assert (frames[0].pulse_rate, frames[0].spo2, frames[0].finger_out) == (255, 127, True)
    v = phys.oximetry(1)  # frame 64 is in second 1 (60 frames per second)
    assert (frames[64].pulse_rate, frames[64].spo2) == (int(v.pulse_rate), int(v.spo2))


def test_heart_rate_and_battery(phys: Physiology, world: SimTime) -> None:
    dev = HeartRateStrap(ADDR, phys, world=world)
    for k in range(5):
        assert HeartRateRecord.parse(dev.payload(k)) == HeartRateRecord(
            phys.heart_rate(k), False, 3, None, phys.rr_intervals(k)
        )
    assert BatteryLevelRecord.parse(dev.battery.encode()) == BatteryLevelRecord(85)
    assert values(decode("2a19", dev.battery.encode())) == [Decimal(85)]


def test_device_clock_drift() -> None:
    world = SimTime(speed=1e4)
    e0 = world.elapsed()
    clock = DeviceClock(world, drift_ppm=10_000)  # 1 % fast
    e1 = world.elapsed()
    time.sleep(0.02)
    e2 = world.elapsed()
    offset = clock.offset().total_seconds()
    e3 = world.elapsed()
    assert 0.01 * (e2 - e1) <= offset <= 0.01 * (e3 - e0)
    assert offset > 1.0


def test_device_clock_set_and_reset() -> None:
    clock = DeviceClock(SimTime(speed=1.0))
    assert abs(clock.offset()) < timedelta(seconds=1)
    clock.set(datetime(2024, 1, 1, 12, 0, 0))
    assert abs(clock.now() - datetime(2024, 1, 1, 12, 0, 0)) < timedelta(seconds=5)
    assert (clock.is_set, clock.sets) == (True, 1)
    clock.reset()
    assert (clock.is_set, clock.now() - datetime(2000, 1, 1) < timedelta(seconds=5)) == (
        False,
        True,
    )
    unset = DeviceClock(SimTime(speed=1.0), is_set=False)
    assert unset.device_time() == DeviceTime(2000, 1, 1, 0, 0, 0)
