"""Contec CMS50D-BT (BLE): 0xEB-framed live data on the 0xFF02 notify characteristic.

Reference §6.3 [M]; frame layout and checksum as used by the public EMAY SleepO2 / Contec BLE
clients (same Contec firmware family: service 0xFF12, write 0xFF01, notify 0xFF02), cross-checked
on the start command the reference gives: ``9B 01 1C`` = ``9B 01`` + (0x9B + 0x01) & 0x7F.

Frame (every octet after the header is a field; the length counts the octets after it)::

    B0      0xEB (frame start)
    B1      type: 0x01 = parameters, 0x00 = waveform (pleth); others are replies to commands
    B2      length L: the number of octets that follow, checksum included (5 for type 0x01)
    B3..    payload (L - 1 octets)
    last    checksum = sum(B0 .. previous octet) & 0x7F

Parameters (type 0x01, L = 5): ``B3`` pulse rate (/min), ``B4`` SpO2 (%), ``B5 B6`` not
documented (``7F 00`` in every public capture; kept as ``reserved``). Missing markers: PR 0 or
255, SpO2 0 or 127 (the clients treat 0 and 0xFF as "no reading"; 127 is Contec's marker); a
SpO2 101..126 or 128..254 is rejected. Waveform (type 0x00): ``B3`` pleth sample; no clinical
value, so the framer consumes it without a record (``telehub decode`` shows it).

The start of the live stream is a write of ``9B 01 1C`` to 0xFF01 after subscribing
(:data:`START_COMMAND`, carried on the registry entry as ``start_write``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Self

from drivers import codes
from drivers._obs import observation
from drivers._vendor import NEED_MORE, Step, StreamFramer, rebase
from drivers.driver import Driver
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement, Special
from drivers.uuids import uuid16

CONTEC_BT_KEY = "contec-cms50d-bt"
SYNC = 0xEB
TYPE_WAVEFORM = 0x00
TYPE_PARAMETERS = 0x01
PARAMETERS_LEN = 5  # B2 of a parameters frame
MAX_LEN = 32  # longest L accepted (larger is a false sync)

CONTEC_BT_SERVICE = uuid16(0xFF12)
CONTEC_BT_WRITE = uuid16(0xFF01)
CONTEC_BT_NOTIFY = uuid16(0xFF02)
START_COMMAND = bytes((0x9B, 0x01, 0x1C))

PR_MISSING = (0, 255)
SPO2_MISSING = (0, 127)


def checksum(octets: bytes) -> int:
    """Sum of the octets, low 7 bits."""
    return sum(octets) & 0x7F


@dataclass(frozen=True, slots=True)
class ContecBtFrame:
    """One frame: type, the payload (between length and checksum) and the checksum."""

    type: int
    payload: bytes
    checksum: int

    def encode(self) -> bytes:
        return (
            bytes((SYNC, self.type, len(self.payload) + 1)) + self.payload + bytes((self.checksum,))
        )

    @classmethod
    def build(cls, type_: int, payload: bytes) -> Self:
        head = bytes((SYNC, type_, len(payload) + 1)) + payload
        return cls(type_, bytes(payload), checksum(head))

    @classmethod
    def parse(cls, data: bytes, source: str = CONTEC_BT_KEY) -> Self:
        """Exactly one frame: sync, type, length, payload, checksum."""
        if len(data) < 4:
            raise DecodeError(source, "frame", 0, f"a frame is at least 4 octets, got {len(data)}")
        if data[0] != SYNC:
            raise DecodeError(source, "sync", 0, f"octet 0 must be 0xEB, got 0x{data[0]:02X}")
        length = data[2]
        if length + 3 != len(data):
            raise DecodeError(
                source, "length", 2, f"length {length} needs {length + 3} octets, got {len(data)}"
            )
        want = checksum(data[:-1])
        if data[-1] != want:
            raise DecodeError(
                source,
                "checksum",
                len(data) - 1,
                f"checksum 0x{data[-1]:02X}, expected 0x{want:02X}",
            )
        if data[1] == TYPE_PARAMETERS:
            if length != PARAMETERS_LEN:
                raise DecodeError(
                    source, "length", 2, f"a parameters frame has length 5, got {length}"
                )
            spo2 = data[4]
            if not (spo2 <= 100 or spo2 == 127):
                raise DecodeError(
                    source, "spo2", 4, f"{spo2} is neither 0..100 % nor 127 (missing)"
                )
        return cls(data[1], bytes(data[3:-1]), data[-1])

    @property
    def pulse_rate(self) -> int | None:
        return self.payload[0] if self.type == TYPE_PARAMETERS else None

    @property
    def spo2(self) -> int | None:
        return self.payload[1] if self.type == TYPE_PARAMETERS else None

    @property
    def reserved(self) -> bytes | None:
        return self.payload[2:4] if self.type == TYPE_PARAMETERS else None

    @property
    def pleth(self) -> int | None:
        return self.payload[0] if self.type == TYPE_WAVEFORM and self.payload else None

    def measurement(self, source: str, raw: bytes) -> Measurement | None:
        """A parameters frame -> Measurement; other types carry no reading (None)."""
        if self.type != TYPE_PARAMETERS:
            return None
        pr, spo2 = self.payload[0], self.payload[1]
        return Measurement(
            source=source,
            raw=raw,
            observations=(
                observation(
                    codes.MDC_PULS_OXIM_SAT_O2,
                    Special.MISSING if spo2 in SPO2_MISSING else Decimal(spo2),
                    codes.UCUM_PERCENT,
                ),
                observation(
                    codes.MDC_PULS_OXIM_PULS_RATE,
                    Special.MISSING if pr in PR_MISSING else Decimal(pr),
                    codes.UCUM_PER_MIN,
                ),
            ),
            kind=Kind.CONTINUOUS,
        )


def decode_contec_bt(data: bytes) -> Measurement:
    """One parameters frame (type 0x01, 8 octets) -> Measurement."""
    frame = ContecBtFrame.parse(data, CONTEC_BT_KEY)
    m = frame.measurement(CONTEC_BT_KEY, bytes(data))
    if m is None:
        raise DecodeError(
            CONTEC_BT_KEY, "type", 1, f"frame type 0x{frame.type:02X} carries no reading"
        )
    return m


class ContecBtFramer(StreamFramer):
    """Splits the notification stream into 0xEB frames; resynchronises on the next 0xEB.

    Octets before an 0xEB, and an 0xEB whose length is impossible (< 1 or > 32), are discarded
    (one ``sync`` DecodeError per run). A complete frame with a bad checksum or SpO2 is consumed
    and returned as a DecodeError. Waveform and reply frames are consumed without a record.
    """

    def __init__(self, source: str = CONTEC_BT_KEY) -> None:
        super().__init__(source)

    def _step(self, buf: bytearray, pos: int) -> Step:
        if buf[pos] != SYNC:
            return Step(1, garbage="no frame start (0xEB)")
        if len(buf) - pos < 3:
            return NEED_MORE
        length = buf[pos + 2]
        if not 1 <= length <= MAX_LEN:
            return Step(1, garbage=f"impossible frame length {length}")
        if len(buf) - pos < length + 3:
            return NEED_MORE
        raw = bytes(buf[pos : pos + length + 3])
        try:
            frame = ContecBtFrame.parse(raw, self.source)
        except DecodeError as err:
            return Step(len(raw), rebase(err, self.source, self.stream_offset(pos)))
        return Step(len(raw), frame.measurement(self.source, raw))


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key=CONTEC_BT_KEY,
        name="Contec CMS50D-BT oximeter (BLE, 0xFF02 notifications)",
        decode=decode_contec_bt,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=CONTEC_BT_NOTIFY,
        service=CONTEC_BT_SERVICE,
        name_patterns=(r"^SpO208", r"^CMS50D"),
        framer=lambda: ContecBtFramer(CONTEC_BT_KEY),
        start_write=(CONTEC_BT_WRITE, START_COMMAND),
    ),
)

__all__ = [
    "CONTEC_BT_KEY",
    "CONTEC_BT_NOTIFY",
    "CONTEC_BT_SERVICE",
    "CONTEC_BT_WRITE",
    "DRIVERS",
    "START_COMMAND",
    "ContecBtFrame",
    "ContecBtFramer",
    "checksum",
    "decode_contec_bt",
]
