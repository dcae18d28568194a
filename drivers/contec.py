"""Contec CMS50D+ (old protocol) and BerryMed BCI oximeters: the 5-octet live frame.

Reference §6.3. Serial (CP210x USB adapter) at 19200 baud, 8 data bits, **odd parity**, 1 stop
bit, 60 frames per second. BerryMed BCI sends the identical frame over BLE, on the ISSC
transparent-UART service, so both drivers share :class:`ContecFrame` and :class:`ContecFramer`.

Frame (b7 is the sync bit: set in octet 0 only)::

    B0  b0-3 signal strength · b4 finger out · b5 SpO2 dropping / probe unplugged · b6 pulse beep
    B1  b0-6 pleth (waveform sample)
    B2  b0-3 bar graph · b4 probe error · b5 searching · b6 pulse rate bit 7
    B3  b0-6 pulse rate bits 0-6
    B4  b0-6 SpO2 %

Invalid markers (BerryMed BCI document; Contec assumed the same): pulse rate 255 and SpO2 127
decode as :attr:`Special.MISSING`. SpO2 values 101..126 cannot be a saturation: the frame is
rejected (DecodeError).

**Every valid frame becomes a Measurement** (60 per second): the driver is faithful; the edge
downsamples continuous streams. Frames whose values are missing are emitted too (with
``Special.MISSING`` and the device's status flags), so a finger-out period is visible downstream.
Flag names follow each vendor's own: Contec's (atbrask/CMS50Dplus) ``finger-out``,
``spo2-dropping``, ``pulse-beep``, ``probe-error``, ``searching``; BerryMed's (BCI protocol)
``no-signal``, ``probe-unplugged``, ``pulse-beep``, ``no-finger``, ``searching``. Signal
strength, pleth and bar graph stay in the record (no exact clinical code); BerryMed's own code
calls the signal-strength nibble "PI", which is not a perfusion index in %, so it is not reported
as one.

Device matching is only a hint for both: the CMS50D+ cable is a Silicon Labs CP210x bridge
(USB 10c4:ea60), a generic adapter found in many unrelated products, and the ISSC transparent-UART
service is generic to Microchip RN4870/BM70-based BLE modules. Confirm the device by seeing valid
frames (the framer's DecodeError rate), not by the USB id or service alone.

Stored-data download (``F5 F5``) and the newer 115200-baud protocol are not decoded here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Self

from drivers._vendor import (
    NEED_MORE,
    SPO2_MISSING,
    Step,
    StreamFramer,
    check_spo2,
    oximetry_observations,
    rebase,
)
from drivers.driver import Driver, SerialParams
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement

log = logging.getLogger(__name__)

CONTEC_KEY = "contec-cms50d"
BERRYMED_KEY = "berrymed-ble"
FRAME_LEN = 5
PR_MISSING = 255
#: Status-bit names, in the order B0 b4, B0 b5, B0 b6, B2 b4, B2 b5. Contec's follow
#: atbrask/CMS50Dplus; BerryMed's follow the BerryMed BCI protocol (reference §6.3, the names in
#: brackets): the same bits mean different things on the two devices.
CONTEC_FLAG_NAMES = ("finger-out", "spo2-dropping", "pulse-beep", "probe-error", "searching")
BERRYMED_FLAG_NAMES = ("no-signal", "probe-unplugged", "pulse-beep", "no-finger", "searching")

#: Silicon Labs CP210x USB-UART bridge, as fitted to the CMS50D+ cable. A generic adapter: many
#: unrelated devices use it, so a match is only a hint (confirm by seeing valid frames).
CP210X_USB_ID = (0x10C4, 0xEA60)
#: ISSC/Microchip transparent-UART service and its notify characteristic (BerryMed BCI). Generic
#: too (any RN4870/BM70-based product exposes it): the advertised name is the better hint.
ISSC_UART_SERVICE = "49535343-fe7d-4ae5-8fa9-9fafd205e455"
ISSC_UART_NOTIFY = "49535343-1e4d-4bd9-ba61-23c647249616"


@dataclass(frozen=True, slots=True)
class ContecFrame:
    """One 5-octet live frame, field by field as the device sends it."""

    signal_strength: int  # 0..15
    finger_out: bool
    spo2_dropping: bool  # "probe unplugged" in BerryMed's naming
    pulse_beep: bool
    pleth: int  # 0..127
    bar_graph: int  # 0..15
    probe_error: bool  # "no finger" in BerryMed's naming
    searching: bool
    pulse_rate: int  # 0..255, 255 = missing
    spo2: int  # 0..100, 127 = missing

    def encode(self) -> bytes:
        return bytes(
            (
                0x80
                | (self.signal_strength & 0x0F)
                | (0x10 if self.finger_out else 0)
                | (0x20 if self.spo2_dropping else 0)
                | (0x40 if self.pulse_beep else 0),
                self.pleth & 0x7F,
                (self.bar_graph & 0x0F)
                | (0x10 if self.probe_error else 0)
                | (0x20 if self.searching else 0)
                | ((self.pulse_rate & 0x80) >> 1),
                self.pulse_rate & 0x7F,
                self.spo2 & 0x7F,
            )
        )

    @classmethod
    def parse(cls, data: bytes, source: str = CONTEC_KEY) -> Self:
        """Exactly one frame: 5 octets, b7 set in octet 0 and clear in octets 1-4."""
        if len(data) != FRAME_LEN:
            raise DecodeError(source, "frame", 0, f"a frame is 5 octets, got {len(data)}")
        if not data[0] & 0x80:
            raise DecodeError(source, "sync", 0, "b7 of octet 0 must be set")
        for i in range(1, FRAME_LEN):
            if data[i] & 0x80:
                raise DecodeError(source, "sync", i, f"b7 of octet {i} must be clear")
        check_spo2(data[4], source, "spo2", 4)
        b0, b2 = data[0], data[2]
        return cls(
            signal_strength=b0 & 0x0F,
            finger_out=bool(b0 & 0x10),
            spo2_dropping=bool(b0 & 0x20),
            pulse_beep=bool(b0 & 0x40),
            pleth=data[1],
            bar_graph=b2 & 0x0F,
            probe_error=bool(b2 & 0x10),
            searching=bool(b2 & 0x20),
            pulse_rate=((b2 & 0x40) << 1) | data[3],
            spo2=data[4],
        )

    @property
    def flags(self) -> tuple[str, ...]:
        """The set status bits by Contec's names (atbrask/CMS50Dplus)."""
        return self.flags_named(CONTEC_FLAG_NAMES)

    def flags_named(self, names: tuple[str, str, str, str, str]) -> tuple[str, ...]:
        """The set status bits, named by ``names`` (B0 b4, B0 b5, B0 b6, B2 b4, B2 b5)."""
        bits = (
            self.finger_out,
            self.spo2_dropping,
            self.pulse_beep,
            self.probe_error,
            self.searching,
        )
        return tuple(name for name, on in zip(names, bits, strict=True) if on)

    def measurement(self, source: str, raw: bytes) -> Measurement:
        return Measurement(
            source=source,
            raw=raw,
            observations=oximetry_observations(self.spo2, self.pulse_rate, PR_MISSING),
            kind=Kind.CONTINUOUS,
            flags=self.flags_named(
                BERRYMED_FLAG_NAMES if source == BERRYMED_KEY else CONTEC_FLAG_NAMES
            ),
        )


def decode_contec(data: bytes) -> Measurement:
    """One CMS50D+ live frame (5 octets) -> Measurement."""
    return ContecFrame.parse(data, CONTEC_KEY).measurement(CONTEC_KEY, bytes(data))


def decode_berrymed(data: bytes) -> Measurement:
    """One BerryMed BCI frame (5 octets, same layout) -> Measurement."""
    return ContecFrame.parse(data, BERRYMED_KEY).measurement(BERRYMED_KEY, bytes(data))


class ContecFramer(StreamFramer):
    """Splits a Contec/BerryMed byte stream into frames; resynchronises on the b7 sync bit.

    Octets before a b7-set octet, and a "frame" whose octets 1-4 contain a b7-set octet, are
    discarded (reported once per run as a ``sync`` DecodeError); the b7-set octet inside starts
    the next candidate frame. A well-synchronised frame with an impossible SpO2 is consumed and
    returned as a DecodeError.
    """

    def __init__(self, source: str = CONTEC_KEY) -> None:
        super().__init__(source)

    def _step(self, buf: bytearray, pos: int) -> Step:
        if not buf[pos] & 0x80:
            return Step(1, garbage="no frame start (b7 clear)")
        if len(buf) - pos < FRAME_LEN:
            return NEED_MORE
        for i in range(1, FRAME_LEN):
            if buf[pos + i] & 0x80:
                return Step(i, garbage=f"frame cut short: b7 set in octet {i}")
        raw = bytes(buf[pos : pos + FRAME_LEN])
        try:
            frame = ContecFrame.parse(raw, self.source)
        except DecodeError as err:
            return Step(FRAME_LEN, rebase(err, self.source, self.stream_offset(pos)))
        return Step(FRAME_LEN, frame.measurement(self.source, raw))


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key=CONTEC_KEY,
        name="Contec CMS50D+ oximeter (old protocol, USB serial)",
        decode=decode_contec,
        transport="serial",
        kind=Kind.CONTINUOUS,
        usb_ids=(CP210X_USB_ID,),
        serial=SerialParams(baudrate=19200, bytesize=8, parity="O", stopbits=1),
        framer=lambda: ContecFramer(CONTEC_KEY),
    ),
    Driver(
        key=BERRYMED_KEY,
        name="BerryMed BCI oximeter (BLE transparent UART)",
        decode=decode_berrymed,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=ISSC_UART_NOTIFY,
        service=ISSC_UART_SERVICE,
        name_patterns=(r"^BerryMed",),
        framer=lambda: ContecFramer(BERRYMED_KEY),
    ),
)

__all__ = [
    "BERRYMED_FLAG_NAMES",
    "CONTEC_FLAG_NAMES",
    "DRIVERS",
    "PR_MISSING",
    "SPO2_MISSING",
    "ContecFrame",
    "ContecFramer",
    "decode_berrymed",
    "decode_contec",
]
