"""The BLE transport interface the edge agent talks to.

Real hubs use :mod:`edge.ble.bleak_transport` (bleak); tests, the demo and benchmarks use
:class:`simulators.ble.SimulatedRadio`, which implements the same two protocols in-process. Only
what the device sessions need is here: scan, connect, read, write, notifications/indications.

UUIDs are lower-case 128-bit strings (``"00002a35-0000-1000-8000-00805f9b34fb"``); use
:func:`uuid16` to build them from 16-bit SIG numbers.

Indications: the handler is awaited before the link layer confirms the indication (the simulator
waits for it; on BlueZ the confirmation is sent by the stack, so the edge persists inside the
handler and deduplicates on replay). A device therefore counts a record as delivered only after
the edge's handler has returned, i.e. after the reading is committed to the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from drivers import uuids

NotifyHandler = Callable[[bytes], Awaitable[None]]

#: One UUID normaliser for the whole code base (drivers' registry, this seam, simulators).
normalize_uuid = uuids.normalize
uuid16 = uuids.uuid16
BASE_UUID_SUFFIX = uuids.BASE_UUID_SUFFIX


@dataclass(frozen=True, slots=True)
class Advertisement:
    address: str  # BLE address (or an opaque id on platforms that hide it)
    name: str | None
    service_uuids: tuple[str, ...] = ()
    rssi: int | None = None
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)


class TransportError(Exception):
    """The radio or the link failed (connect refused, link lost, GATT error, timeout)."""


@runtime_checkable
class BleLink(Protocol):
    """One connection to one peripheral."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def connect(self, timeout: float) -> None: ...

    async def disconnect(self) -> None: ...

    async def services(self) -> Sequence[str]:
        """Service UUIDs discovered on the peripheral."""
        ...

    async def characteristics(self) -> Sequence[str]:
        """Characteristic UUIDs discovered on the peripheral."""
        ...

    async def read(self, char_uuid: str, timeout: float) -> bytes: ...

    async def write(
        self, char_uuid: str, data: bytes, *, response: bool, timeout: float
    ) -> None: ...

    async def start_notify(self, char_uuid: str, handler: NotifyHandler) -> None:
        """Subscribe to notifications *and* indications of a characteristic."""
        ...

    async def stop_notify(self, char_uuid: str) -> None: ...

    async def wait_disconnected(self) -> None:
        """Return when the peripheral or the radio ends the link."""
        ...


@runtime_checkable
class BleTransport(Protocol):
    """A radio: finds peripherals and opens links to them."""

    async def scan(self, timeout: float) -> Sequence[Advertisement]: ...

    def link(self, address: str) -> BleLink: ...
