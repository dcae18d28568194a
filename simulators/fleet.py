"""A simulated set of households for the demo, benchmarks and end-to-end tests.

``demo_fleet(n_patients=3, seed=0)`` gives a :class:`Fleet`: one :class:`SimulatedRadio` with every
BLE device on it, and the :class:`Binding` list (device address, patient id, registry keys) that
the demo writes into the edge allow-list and the gateway's device registry.

Profiles rotate ``HYPERTENSIVE_CRISIS, NORMAL, HYPOXIC_COPD, HEART_FAILURE``, so patient 1 trips
a threshold at once (systolic >= 180 mmHg in the first reading its cuff uploads) and patient 3 a
few seconds into streaming (SpO2 < 90 % from second 5 of its continuous oximeter).

Devices per patient: an A&D blood-pressure cuff and scale for everybody; a thermometer, a glucose
meter and a Nonin 3230 for NORMAL; a PLXS oximeter for HYPOXIC_COPD; a heart-rate strap for
HEART_FAILURE. ``with_serial`` adds a Contec CMS50D+ on a pty for the COPD patient (its binding's
address is the port path). Every spot device holds ``start_readings`` readings from the start, so
it advertises at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.contec import CONTEC_KEY
from drivers.jumper import JUMPER_KEY
from drivers.nonin import BLE_KEY as NONIN_BLE_KEY
from simulators.ble.peripheral import Peripheral
from simulators.ble.radio import SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.glucose import GlucoseMeter
from simulators.devices.heart_rate import HeartRateStrap
from simulators.devices.jumper import JumperOximeter
from simulators.devices.nonin import Nonin3230
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.devices.scale import WeightScale
from simulators.devices.spot import SpotCheckDevice
from simulators.devices.thermometer import Thermometer
from simulators.physiology import Physiology, Profile
from simulators.serial.contec import ContecCms50d
from simulators.serial.pty import PtyDevice

log = logging.getLogger(__name__)

PROFILES: tuple[Profile, ...] = (
    Profile.HYPERTENSIVE_CRISIS,
    Profile.NORMAL,
    Profile.HYPOXIC_COPD,
    Profile.HEART_FAILURE,
)

#: Registry keys (drivers.registry) of what each device family sends.
KEYS: dict[str, tuple[str, ...]] = {
    "blood-pressure": ("2a35",),
    "weight": ("2a9d",),
    "thermometer": ("2a1c",),
    "glucose": ("2a18",),
    "pulse-oximeter": ("2a5f", "2a5e"),
    "nonin-ble": (NONIN_BLE_KEY,),
    "jumper-ble": (JUMPER_KEY,),
    "heart-rate": ("2a37",),
    "contec-serial": (CONTEC_KEY,),
}


@dataclass(frozen=True, slots=True)
class Binding:
    """Which patient a device belongs to and how the edge decodes it."""

    address: str  # BLE address, or the pty port path of a serial device
    patient_id: str
    family: str  # a key of KEYS
    driver_keys: tuple[str, ...]  # registry keys of the records the device sends
    transport: str  # "ble" or "serial"
    name: str | None = None  # advertised name


@dataclass(slots=True)
class Patient:
    patient_id: str
    profile: Profile
    physiology: Physiology
    devices: list[Peripheral] = field(default_factory=list)
    serial_devices: list[PtyDevice] = field(default_factory=list)


@dataclass(slots=True)
class Fleet:
    world: SimTime
    radio: SimulatedRadio
    patients: tuple[Patient, ...]
    bindings: tuple[Binding, ...]

    def patient(self, patient_id: str) -> Patient:
        return next(p for p in self.patients if p.patient_id == patient_id)

    def device(self, address: str) -> Peripheral:
        return self.radio.peripheral(address)

    @property
    def serial_devices(self) -> tuple[PtyDevice, ...]:
        return tuple(d for p in self.patients for d in p.serial_devices)

    def take_readings(self) -> int:
        """Every patient measures once with each spot device (and the PLX spot-check)."""
        n = 0
        for p in self.patients:
            for dev in p.devices:
                if isinstance(dev, SpotCheckDevice | GlucoseMeter):
                    dev.take_reading()
                elif isinstance(dev, PulseOximeter):
                    dev.take_spot_check()
                else:
                    continue
                n += 1
        return n

    async def start(self) -> None:
        """Plug in the serial devices (BLE devices need no start)."""
        for d in self.serial_devices:
            await d.start()

    async def run(self, reading_interval: float = 3600.0) -> None:
        """Take readings every ``reading_interval`` simulated seconds until cancelled."""
        while True:
            await self.world.sleep(reading_interval)
            count = self.take_readings()
            log.info("fleet: %d readings taken", count)

    async def aclose(self) -> None:
        for d in self.serial_devices:
            await d.aclose()
        await self.radio.aclose()


def _address(patient: int, device: int) -> str:
    return f"C0:FE:{patient >> 8 & 0xFF:02X}:{patient & 0xFF:02X}:00:{device:02X}"


def demo_fleet(
    n_patients: int = 3,
    *,
    seed: int = 0,
    speed: float = 1.0,
    world: SimTime | None = None,
    start_readings: int = 1,
    with_serial: bool = False,
    profiles: Sequence[Profile] = PROFILES,
) -> Fleet:
    """Build the households (see the module docstring)."""
    world = world if world is not None else SimTime(speed=speed)
    radio = SimulatedRadio(world=world)
    patients: list[Patient] = []
    bindings: list[Binding] = []
    for i in range(n_patients):
        profile = profiles[i % len(profiles)]
        pid = f"P{i + 1:03d}"
        phys = Physiology(profile, seed * 1000 + i)
        patient = Patient(pid, profile, phys)
        spot: list[Peripheral] = [
            BloodPressureMonitor(_address(i, 1), phys, world=world),
            WeightScale(_address(i, 2), phys, world=world),
        ]
        families = ["blood-pressure", "weight"]
        extra: list[tuple[Peripheral, str]] = []
        if profile is Profile.NORMAL:
            extra += [
                (Thermometer(_address(i, 3), phys, world=world), "thermometer"),
                (GlucoseMeter(_address(i, 4), phys, world=world), "glucose"),
                (Nonin3230(_address(i, 5), phys, world=world), "nonin-ble"),
            ]
        elif profile is Profile.HYPOXIC_COPD:
            extra += [(PulseOximeter(_address(i, 3), phys, world=world), "pulse-oximeter")]
        elif profile is Profile.HEART_FAILURE:
            extra += [(HeartRateStrap(_address(i, 3), phys, world=world), "heart-rate")]
        if i >= len(profiles):  # a second round of households: some other vendor's oximeter
            extra += [(JumperOximeter(_address(i, 6), phys, world=world), "jumper-ble")]
        devices = spot + [d for d, _ in extra]
        families += [f for _, f in extra]
        for dev, family in zip(devices, families, strict=True):
            radio.add(dev)
            patient.devices.append(dev)
            bindings.append(Binding(dev.address, pid, family, KEYS[family], "ble", dev.name))
        for _ in range(start_readings):
            for dev in devices:
                if isinstance(dev, SpotCheckDevice | GlucoseMeter):
                    dev.take_reading()
        if with_serial and profile is Profile.HYPOXIC_COPD:
            contec = ContecCms50d(phys, world=world)
            patient.serial_devices.append(contec)
            family = "contec-serial"
            bindings.append(Binding(contec.port, pid, family, KEYS[family], "serial", None))
        patients.append(patient)
    log.info("fleet: %d patients, %d devices", len(patients), len(bindings))
    return Fleet(world, radio, tuple(patients), tuple(bindings))
