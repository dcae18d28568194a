"""Exact, pure decoders for home-monitoring devices (Bluetooth SIG GATT, IEEE 11073, vendor).

Every decoder is a function ``bytes -> Measurement`` with no I/O; it raises only
:class:`DecodeError`. The registry maps characteristics, advertised names and USB ids to decoders.
"""

from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity, Special

__all__ = [
    "DecodeError",
    "DeviceTime",
    "Kind",
    "Measurement",
    "Observation",
    "Quantity",
    "Special",
]
