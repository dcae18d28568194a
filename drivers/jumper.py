"""Jumper JPD-500F (and rebadged "My Oximeter") BLE oximeter: the 0x81 parameter frame.

Reference §6.4. Service ``CDEACB80-5235-4C07-8846-93A37EE6B86D``, notify characteristic
``CDEACB81-…``. The characteristic carries a byte stream of frames that start with 0x81
(parameters: ``81 PR SpO2 PI``, 4 octets) or 0x80 (plethysmogram), and idle octets (e.g. 0x2D)
while no finger is inserted. PR 255 and SpO2 127 are "missing"; PI is in 0.1 % (6.8 % = 68).
PI 0 is also treated as missing: two public clients (the AGILE MedicalDevice driver and a
Web-Bluetooth resolver) treat 0 as "no value", and 0.0 % is not a perfusion a sensor reports.

Framing assumption (no public source gives the 0x80 frame length): the framer does not depend
on notification boundaries. It scans the stream for 0x81, takes the next 3 octets as one parameter
frame, and skips every other octet silently (waveform, idle). A notification that carries several
frames, or a frame split over two notifications, decodes the same as one frame per notification.
This is exact as long as waveform and idle octets never equal 0x81 (the pleth samples of this
device family are 7-bit, as in the BerryMed/Contec frames). If one did, a false header whose SpO2
octet is impossible (101..126, > 127) is returned as a DecodeError and scanning resumes at the next
octet; a false header followed by plausible octets would be read as a frame (pinned by a test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Self

from drivers import codes
from drivers._obs import observation
from drivers._vendor import (
    NEED_MORE,
    Step,
    StreamFramer,
    check_spo2,
    oximetry_observations,
    rebase,
)
from drivers.driver import Driver
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement, Special

log = logging.getLogger(__name__)

JUMPER_KEY = "jumper-ble"
SERVICE = "cdeacb80-5235-4c07-8846-93a37ee6b86d"
NOTIFY_UUID = "cdeacb81-5235-4c07-8846-93a37ee6b86d"
PARAMS = 0x81
WAVEFORM = 0x80
FRAME_LEN = 4
PR_MISSING = 255
PI_MISSING = 0


@dataclass(frozen=True, slots=True)
class JumperParams:
    """The 0x81 parameter frame: raw octets in device units."""

    SOURCE: ClassVar[str] = JUMPER_KEY

    pulse_rate: int  # /min, 255 = missing
    spo2: int  # %, 127 = missing
    pi: int  # perfusion index, 0.1 %; 0 = missing

    def encode(self) -> bytes:
        return bytes((PARAMS, self.pulse_rate, self.spo2, self.pi))

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Exactly one parameter frame (4 octets starting with 0x81)."""
        if len(data) != FRAME_LEN:
            raise DecodeError(cls.SOURCE, "frame", 0, f"a frame is 4 octets, got {len(data)}")
        if data[0] != PARAMS:
            raise DecodeError(cls.SOURCE, "type", 0, f"0x{data[0]:02x} is not a 0x81 frame")
        check_spo2(data[2], cls.SOURCE, "spo2", 2)
        return cls(pulse_rate=data[1], spo2=data[2], pi=data[3])

    def measurement(self, raw: bytes) -> Measurement:
        pi = Special.MISSING if self.pi == PI_MISSING else Decimal(self.pi).scaleb(-1)
        return Measurement(
            source=self.SOURCE,
            raw=raw,
            observations=(
                *oximetry_observations(self.spo2, self.pulse_rate, PR_MISSING),
                observation(codes.MDC_PULS_OXIM_PERF_REL, pi, codes.UCUM_PERCENT),
            ),
            kind=Kind.CONTINUOUS,
        )


def decode_jumper(data: bytes) -> Measurement:
    """One 0x81 parameter frame (4 octets) -> Measurement."""
    return JumperParams.parse(data).measurement(bytes(data))


class JumperFramer(StreamFramer):
    """Jumper byte stream -> one Measurement per 0x81 frame (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(JUMPER_KEY)

    def _step(self, buf: bytearray, pos: int) -> Step:
        if buf[pos] != PARAMS:
            return Step(1)  # waveform or idle octet: not an error
        if len(buf) - pos < FRAME_LEN:
            return NEED_MORE
        raw = bytes(buf[pos : pos + FRAME_LEN])
        try:
            params = JumperParams.parse(raw)
        except DecodeError as err:
            return Step(1, rebase(err, self.source, self.stream_offset(pos)))
        return Step(FRAME_LEN, params.measurement(raw))


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key=JUMPER_KEY,
        name="Jumper JPD-500F oximeter (BLE)",
        decode=decode_jumper,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=NOTIFY_UUID,
        service=SERVICE,
        name_patterns=(r"My ?Oximeter",),
        framer=JumperFramer,
    ),
)

__all__ = ["DRIVERS", "JumperFramer", "JumperParams", "decode_jumper"]
