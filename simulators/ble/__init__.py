"""In-process BLE: a simulated radio implementing ``edge.ble.transport`` and peripheral models."""

from simulators.ble.gatt import AttError, AttErrorCode, Characteristic, Prop, Service
from simulators.ble.peripheral import Connection, Peripheral
from simulators.ble.radio import GattError, SimulatedLink, SimulatedRadio

__all__ = [
    "AttError",
    "AttErrorCode",
    "Characteristic",
    "Connection",
    "GattError",
    "Peripheral",
    "Prop",
    "Service",
    "SimulatedLink",
    "SimulatedRadio",
]
