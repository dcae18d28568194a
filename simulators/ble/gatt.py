"""A peripheral's GATT table: services, characteristics, properties, values and handlers.

Characteristics hold a static value (``value``) or compute it (``on_read``); writes go to
``on_write``, which may raise :class:`AttError` to answer with an ATT error code exactly as a real
device would (the central sees a :class:`~edge.ble.transport.TransportError`). Write handlers must
be quick: a procedure that sends records (RACP, an upload) is spawned by the device as a
connection task, never awaited inside the write (a real write response does not wait for it).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from edge.ble.transport import normalize_uuid, uuid16

ReadHandler = Callable[[], Awaitable[bytes]]
WriteHandler = Callable[[bytes], Awaitable[None]]


class Prop(enum.Flag):
    """Characteristic properties (the ones the simulated devices use)."""

    READ = enum.auto()
    WRITE = enum.auto()  # write request (with response)
    WRITE_NO_RESPONSE = enum.auto()  # write command
    NOTIFY = enum.auto()
    INDICATE = enum.auto()


class AttErrorCode(enum.IntEnum):
    """ATT error codes (Core Vol 3 Part F 3.4.1.1) and the profile codes the simulators use."""

    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    ATTRIBUTE_NOT_FOUND = 0x0A
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    UNLIKELY_ERROR = 0x0E
    VALUE_NOT_ALLOWED = 0x13
    # Application / profile errors (0x80-0x9F): meaning depends on the service.
    PROCEDURE_ALREADY_IN_PROGRESS = 0x80  # RACP (GLS/PLXS); "data field ignored" for CTS
    CCCD_IMPROPERLY_CONFIGURED = 0x81  # RACP / control points: indications not enabled


class AttError(Exception):
    """Raised by a read/write handler: the peripheral answers with an ATT error response."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"ATT error 0x{code:02x}{': ' + reason if reason else ''}")


@dataclass(slots=True)
class Characteristic:
    """One characteristic: UUID (any form, normalised), properties, value, handlers."""

    uuid: str
    props: Prop
    value: bytes = b""
    on_read: ReadHandler | None = None
    on_write: WriteHandler | None = None

    def __post_init__(self) -> None:
        self.uuid = normalize_uuid(self.uuid)

    @property
    def subscribable(self) -> bool:
        return bool(self.props & (Prop.NOTIFY | Prop.INDICATE))


@dataclass(slots=True)
class Service:
    uuid: str
    characteristics: Sequence[Characteristic] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.uuid = normalize_uuid(self.uuid)


# -- common SIG services ----------------------------------------------------------------------
BATTERY_SERVICE = uuid16(0x180F)
BATTERY_LEVEL = uuid16(0x2A19)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
CURRENT_TIME_SERVICE = uuid16(0x1805)
CURRENT_TIME = uuid16(0x2A2B)
DATE_TIME = uuid16(0x2A08)
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
FIRMWARE_REVISION = uuid16(0x2A26)


def device_information(manufacturer: str, model: str, serial: str, firmware: str) -> Service:
    """Device Information Service 0x180A with UTF-8 string characteristics (read)."""
    return Service(
        DEVICE_INFORMATION_SERVICE,
        (
            Characteristic(MANUFACTURER_NAME, Prop.READ, manufacturer.encode()),
            Characteristic(MODEL_NUMBER, Prop.READ, model.encode()),
            Characteristic(SERIAL_NUMBER, Prop.READ, serial.encode()),
            Characteristic(FIRMWARE_REVISION, Prop.READ, firmware.encode()),
        ),
    )
