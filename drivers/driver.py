"""What a registry entry is: one decoder plus how to recognise the device that speaks it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement

Decoder = Callable[[bytes], Measurement]


class Framer(Protocol):
    """Sans-I/O splitter for stream protocols (serial, BLE UART): feed bytes, get records.

    A frame that fails its sync or checksum comes back as a DecodeError in the list (the framer then
    resynchronises); it never raises.
    """

    def feed(self, data: bytes) -> list[Measurement | DecodeError]: ...

    def flush(self) -> list[DecodeError]:
        """End of input: the octets still held (a pending skip run, an incomplete frame or
        packet) as DecodeErrors with their stream offsets; the framer is then empty."""
        ...


@dataclass(frozen=True, slots=True)
class SerialParams:
    baudrate: int
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1


@dataclass(frozen=True, slots=True)
class Driver:
    """One registry entry.

    ``key`` is what ``telehub decode`` and the wire's ``source`` field call it: the lower-case
    16-bit UUID for SIG characteristics ("2a35"), a protocol name for vendor formats ("nonin-df2").
    """

    key: str
    name: str
    decode: Decoder
    transport: Literal["ble", "serial"]
    kind: Kind
    characteristic: str | None = None  # full 128-bit characteristic UUID (lower case)
    service: str | None = None  # full 128-bit service UUID that identifies the family
    name_patterns: tuple[str, ...] = ()  # regexes on the advertised name (vendor devices)
    usb_ids: tuple[tuple[int, int], ...] = ()  # (VID, PID) of USB-serial adapters
    serial: SerialParams | None = None
    framer: Callable[[], Framer] | None = None  # for stream protocols
    #: (characteristic UUID, octets) the hub writes after subscribing to start the stream
    start_write: tuple[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Parser:
    """A non-measurement characteristic (feature, control point, time) that ``telehub decode`` can
    show: ``parse`` returns the record dataclass (it raises only DecodeError)."""

    key: str
    name: str
    parse: Callable[[bytes], object]
    characteristic: str | None = None  # full 128-bit characteristic UUID (lower case)
