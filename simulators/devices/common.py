"""Pieces every simulated BLE device shares: identity, time characteristics, battery, memory."""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from drivers.battery import BatteryLevelRecord
from drivers.errors import DecodeError
from drivers.gatt_time import (
    CURRENT_TIME_LEN,
    DATE_TIME_LEN,
    decode_current_time,
    decode_date_time,
    encode_current_time,
    encode_date_time,
)
from simulators.ble.gatt import (
    BATTERY_LEVEL,
    BATTERY_SERVICE,
    CURRENT_TIME,
    CURRENT_TIME_SERVICE,
    DATE_TIME,
    AttError,
    AttErrorCode,
    Characteristic,
    Prop,
    Service,
    device_information,
)
from simulators.clock import DeviceClock

log = logging.getLogger(__name__)


class Encodable(Protocol):
    """A drivers record: a frozen dataclass that encodes itself to the bytes a device sends."""

    def encode(self) -> bytes: ...


R = TypeVar("R", bound=Encodable)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Device Information Service strings."""

    manufacturer: str
    model: str
    serial: str
    firmware: str = "1.0"

    def service(self) -> Service:
        return device_information(self.manufacturer, self.model, self.serial, self.firmware)


class TimeSync(enum.Enum):
    """Which writable clock characteristic a device exposes."""

    DATE_TIME = "date-time"  # Date Time 0x2A08 inside the measurement service (A&D)
    CURRENT_TIME = "current-time"  # Current Time 0x2A2B in Current Time Service 0x1805
    BOTH = "both"


@dataclass(slots=True)
class StoredReading(Generic[R]):
    """A reading in a device's memory: the record it represents and the exact bytes it sends."""

    ordinal: int  # 0 = the device's first reading
    record: R
    data: bytes  # what goes on air (faults such as truncation already applied)
    sent: bool = False  # confirmed by a central at least once
    deliveries: int = 0  # confirmed deliveries (duplicates and history replays count)


class TimeCharacteristics:
    """The writable clock of a device: Date Time and/or Current Time characteristics.

    A write sets the :class:`DeviceClock` (unless ``ignore`` says the firmware drops it) and calls
    ``on_written``. Wrong lengths answer ATT 0x0D; invalid fields answer 0x80 (CTS "Data field
    ignored") / 0x13 (Value Not Allowed) - the codes real stacks use.
    """

    def __init__(
        self,
        clock: DeviceClock,
        sync: TimeSync,
        on_written: Callable[[], None],
        ignore: Callable[[], bool],
    ) -> None:
        self.clock = clock
        self.sync = sync
        self._on_written = on_written
        self._ignore = ignore
        self.date_time: Characteristic | None = None
        self.current_time: Characteristic | None = None
        if sync in (TimeSync.DATE_TIME, TimeSync.BOTH):
            self.date_time = Characteristic(
                DATE_TIME, Prop.READ | Prop.WRITE, on_read=self._read_dt, on_write=self._write_dt
            )
        if sync in (TimeSync.CURRENT_TIME, TimeSync.BOTH):
            self.current_time = Characteristic(
                CURRENT_TIME,
                Prop.READ | Prop.WRITE | Prop.NOTIFY,
                on_read=self._read_ct,
                on_write=self._write_ct,
            )

    def cts_service(self) -> Service | None:
        if self.current_time is None:
            return None
        return Service(CURRENT_TIME_SERVICE, (self.current_time,))

    def _apply(self, value: datetime) -> None:
        if not self._ignore():
            self.clock.set(value)
        self._on_written()

    async def _read_dt(self) -> bytes:
        return encode_date_time(self.clock.device_time())

    async def _read_ct(self) -> bytes:
        return encode_current_time(self.clock.now(), adjust_reason=0)

    async def _write_dt(self, data: bytes) -> None:
        if len(data) != DATE_TIME_LEN:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "Date Time is 7 octets")
        try:
            t = decode_date_time(data, 0, "2a08")
        except DecodeError as e:
            raise AttError(AttErrorCode.VALUE_NOT_ALLOWED, e.reason) from e
        value = t.naive()
        if value is None:
            raise AttError(AttErrorCode.VALUE_NOT_ALLOWED, "unknown date")
        self._apply(value)

    async def _write_ct(self, data: bytes) -> None:
        if len(data) != CURRENT_TIME_LEN:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "Current Time is 10 octets")
        try:
            ct = decode_current_time(data)
        except DecodeError as e:
            raise AttError(AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, e.reason) from e  # 0x80
        value = ct.time.naive()
        if value is None:
            raise AttError(AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, "unknown date")  # 0x80
        self._apply(value)


class Battery:
    """Battery Service 0x180F with Battery Level 0x2A19 (read, optionally notify)."""

    def __init__(self, level: int, *, notify: bool = False) -> None:
        self.level = level
        props = Prop.READ | (Prop.NOTIFY if notify else Prop(0))
        self.characteristic = Characteristic(BATTERY_LEVEL, props, on_read=self._read)
        self.service = Service(BATTERY_SERVICE, (self.characteristic,))

    def encode(self) -> bytes:
        return BatteryLevelRecord(self.level).encode()

    async def _read(self) -> bytes:
        return self.encode()


def noop_write() -> Callable[[bytes], Awaitable[None]]:
    """A write handler that accepts anything (vendor characteristics the simulator ignores)."""

    async def write(data: bytes) -> None:
        log.debug("vendor write of %d octet(s) ignored", len(data))

    return write
