"""Simulated devices, one module per family (see docs/simulators.md)."""

from simulators.devices.berrymed import BerryMedOximeter
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.common import DeviceInfo, StoredReading, TimeSync
from simulators.devices.contec_bt import ContecBtOximeter
from simulators.devices.glucose import GlucoseMeter
from simulators.devices.heart_rate import HeartRateStrap
from simulators.devices.jumper import JumperOximeter
from simulators.devices.nonin import Nonin3230
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.devices.scale import WeightScale
from simulators.devices.spot import SpotCheckDevice
from simulators.devices.streaming import StreamingDevice
from simulators.devices.thermometer import Thermometer

__all__ = [
    "BerryMedOximeter",
    "BloodPressureMonitor",
    "ContecBtOximeter",
    "DeviceInfo",
    "GlucoseMeter",
    "HeartRateStrap",
    "JumperOximeter",
    "Nonin3230",
    "PulseOximeter",
    "SpotCheckDevice",
    "StoredReading",
    "StreamingDevice",
    "Thermometer",
    "TimeSync",
    "WeightScale",
]
