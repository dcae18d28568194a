"""Nonin oximeters: the BLE Oximetry Measurement, serial Data Format 2 and Data Format 8.

Reference §6.1-6.2 and §8.9-8.10. Nonin's missing markers: SpO2 127 and pulse rate 511
(-> :attr:`Special.MISSING`). A SpO2 octet that is neither 0..100 nor 127 is rejected.

**BLE** (3230 WristOx/finger clip, 3150): one notification = one 10-octet record, multi-octet fields
**big-endian** (Nonin 113142-000-02). Observations: SpO2, pulse rate, and the Pulse Amplitude Index
(0.01 %) as MDC_PULS_OXIM_PERF_REL. Battery voltage (0.1 V) and the counter (seconds since the
start of the measurement) stay in the record. The length octet must be >= 10; octets after the
10 known ones are ignored and flagged ``trailing-octets:N`` (project policy, reference §8.5).
Status flags: :data:`BLE_STATUS` names (b7 reserved, ignored).

**Data Format 2** (OEM III, Xpod, serial): 5-octet frames ``01 | STATUS | PLETH | FLOAT | CHK``,
25 frames per packet (the SYNC bit b0 of STATUS is set in frame 0 only), 75 frames per second.
:class:`NoninDf2Framer` returns one Measurement per complete packet (3 per second), with the
4-beat SpO2 (frame 2) and HR (frames 0-1). The display/fast/beat-to-beat/extended values have no
distinct exact code, so they stay in :class:`NoninDf2Packet` (properties). Measurement flags are
the union over the packet's 25 frames (a condition in any frame qualifies the packet's values):
:data:`DF2_STATUS` names, then ``perfusion-green|red|yellow``.

**Data Format 8** (Onyx II 9560 over Bluetooth SPP): 4-octet packets, one per second
``STATUS1 | HR LSB | SpO2 | STATUS2``. STATUS1 is the same in every source and decoded by name.
STATUS2 is kept raw in the record; only two bits are named as flags: b0 ``low-battery``
(OpenTele and drphrozen's Format8.java agree) and b5 ``smartpoint`` (OpenTele and the
reference). b3 ("finger removed" in OpenTele, "sensor fault" in Format8.java), b1 "battery
critical" and b2 "spot-check mode" (Format8.java only) are not named. DF8 has no checksum: the
framer synchronises on b7 (set in STATUS1, clear in HR LSB and SpO2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal, Self

from drivers import _cursor as c
from drivers import codes
from drivers._cursor import Cursor
from drivers._obs import observation
from drivers._vendor import (
    NEED_MORE,
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

BLE_KEY = "nonin-ble"
DF2_KEY = "nonin-df2"
DF8_KEY = "nonin-df8"
PR_MISSING = 511

NONIN_SERVICE = "46a970e0-0d5f-11e2-8b5e-0002a5d5c51b"
NONIN_OXIMETRY_MEASUREMENT = "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b"
NONIN_CONTROL_POINT = "1447af80-0d60-11e2-88b6-0002a5d5c51b"

BLE_LEN = 10
DF2_FRAME_LEN = 5
DF2_FRAMES = 25
DF2_PACKET_LEN = DF2_FRAME_LEN * DF2_FRAMES
DF8_LEN = 4


# -- BLE ---------------------------------------------------------------------------------------
#: BLE status octet: flag name -> bit (b7 reserved, ignored).
BLE_STATUS: dict[str, int] = {
    "display-sync": 0,
    "weak-signal": 1,
    "smartpoint": 2,  # passed Nonin's SmartPoint quality algorithm
    "searching": 3,
    "correct-check": 4,  # finger correctly placed
    "low-battery": 5,
    "encryption": 6,  # 3150
}


@dataclass(frozen=True, slots=True)
class NoninBleRecord:
    """Nonin Oximetry Measurement characteristic (10 octets, big-endian fields)."""

    SOURCE: ClassVar[str] = BLE_KEY

    status: tuple[str, ...]  # names of the set status bits (BLE_STATUS), in bit order
    battery_decivolts: int  # 0.1 V
    pai: int  # Pulse Amplitude Index, 0.01 %
    counter: int  # seconds since the start of the measurement
    spo2: int  # %, 127 = missing
    pulse_rate: int  # /min, 511 = missing

    def encode(self) -> bytes:
        return (
            bytes((BLE_LEN, c.names_to_bits(self.status, BLE_STATUS), self.battery_decivolts))
            + self.pai.to_bytes(2, "big")
            + self.counter.to_bytes(2, "big")
            + bytes((self.spo2,))
            + self.pulse_rate.to_bytes(2, "big")
        )

    @classmethod
    def read(cls, cur: Cursor) -> Self:
        start = cur.offset
        length = cur.u8("packet length")
        if length < BLE_LEN:
            raise cur.error("packet length", f"{length} < {BLE_LEN}", start)
        status = c.bit_names(cur.u8("status"), BLE_STATUS)
        battery = cur.u8("battery voltage")
        pai = cur.uint(2, "pulse amplitude index", big_endian=True)
        counter = cur.uint(2, "counter", big_endian=True)
        spo2 = cur.u8("spo2")
        check_spo2(spo2, cur.source, "spo2", cur.offset - 1)
        pulse_rate = cur.uint(2, "pulse rate", big_endian=True)
        return cls(status, battery, pai, counter, spo2, pulse_rate)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls.read(Cursor(data, cls.SOURCE))


def decode_ble(data: bytes) -> Measurement:
    """Nonin BLE Oximetry Measurement notification -> Measurement."""
    cur = Cursor(data, BLE_KEY)
    rec = NoninBleRecord.read(cur)
    pai = observation(codes.MDC_PULS_OXIM_PERF_REL, Decimal(rec.pai).scaleb(-2), codes.UCUM_PERCENT)
    return Measurement(
        source=BLE_KEY,
        raw=bytes(data),
        observations=(*oximetry_observations(rec.spo2, rec.pulse_rate, PR_MISSING), pai),
        kind=Kind.CONTINUOUS,
        flags=rec.status + c.trailing(cur),
    )


# -- Data Format 2 -----------------------------------------------------------------------------
#: DF2 STATUS octet: flag name -> bit. b0 is SYNC, b2-1 perfusion, b7 always 1 (structural).
DF2_STATUS: dict[str, int] = {
    "sensor-alarm": 3,  # SNSA
    "out-of-track": 4,  # OOT
    "artifact": 5,  # ARTF
    "sensor-disconnect": 6,  # SNSD
}
Perfusion = Literal["none", "green", "red", "yellow"]
_PERFUSION: tuple[Perfusion, ...] = ("none", "green", "red", "yellow")  # b2-1 = 00, 01, 10, 11


@dataclass(frozen=True, slots=True)
class NoninDf2Frame:
    """One DF2 frame. ``value`` is the FLOAT octet, whose meaning depends on the frame index."""

    sync: bool  # STATUS b0: frame 0 of a packet
    perfusion: Perfusion  # STATUS b2-1
    status: tuple[str, ...]  # names of the other set STATUS bits (DF2_STATUS), in bit order
    pleth: int
    value: int

    def encode(self) -> bytes:
        status = (
            0x80
            | self.sync
            | _PERFUSION.index(self.perfusion) << 1
            | c.names_to_bits(self.status, DF2_STATUS)
        )
        body = bytes((0x01, status, self.pleth, self.value))
        return body + bytes((sum(body) & 0xFF,))

    @classmethod
    def parse(cls, data: bytes, source: str = DF2_KEY) -> Self:
        if len(data) != DF2_FRAME_LEN:
            raise DecodeError(source, "frame", 0, f"a frame is 5 octets, got {len(data)}")
        if data[0] != 0x01:
            raise DecodeError(source, "start", 0, f"start octet 0x{data[0]:02x} is not 0x01")
        if not data[1] & 0x80:
            raise DecodeError(source, "status", 1, "b7 of STATUS must be set")
        checksum = sum(data[:4]) & 0xFF
        if checksum != data[4]:
            raise DecodeError(
                source, "checksum", 4, f"0x{data[4]:02x} != 0x{checksum:02x} (sum of octets 0-3)"
            )
        status = data[1]
        return cls(
            sync=c.bit(status, 0),
            perfusion=_PERFUSION[status >> 1 & 0x03],
            status=c.bit_names(status, DF2_STATUS),
            pleth=data[2],
            value=data[3],
        )


@dataclass(frozen=True, slots=True)
class NoninDf2Packet:
    """25 DF2 frames; the named values are read from the FLOAT octets by frame index."""

    frames: tuple[NoninDf2Frame, ...]

    def __post_init__(self) -> None:
        if len(self.frames) != DF2_FRAMES:
            raise ValueError(f"a DF2 packet has 25 frames, not {len(self.frames)}")

    def encode(self) -> bytes:
        return b"".join(f.encode() for f in self.frames)

    @classmethod
    def parse(cls, data: bytes, source: str = DF2_KEY) -> Self:
        if len(data) != DF2_PACKET_LEN:
            raise DecodeError(source, "packet", 0, f"a packet is 125 octets, got {len(data)}")
        frames = []
        for i in range(DF2_FRAMES):
            at = i * DF2_FRAME_LEN
            try:
                frame = NoninDf2Frame.parse(data[at : at + DF2_FRAME_LEN], source)
            except DecodeError as err:
                field = f"frame {i}.{err.field}"
                raise DecodeError(source, field, at + err.offset, err.reason) from None
            if frame.sync != (i == 0):
                raise DecodeError(
                    source, f"frame {i}.status", at + 1, "SYNC (b0) must be set in frame 0 only"
                )
            frames.append(frame)
        packet = cls(tuple(frames))
        check_spo2(packet.spo2, source, "frame 2.spo2", 2 * DF2_FRAME_LEN + 3)
        return packet

    def _hr(self, msb: int, lsb: int) -> int:
        return ((self.frames[msb].value & 0x03) << 7) | (self.frames[lsb].value & 0x7F)

    @property
    def hr(self) -> int:
        """4-beat average pulse rate (frames 0-1), 511 = missing."""
        return self._hr(0, 1)

    @property
    def spo2(self) -> int:
        """4-beat average SpO2 (frame 2), 127 = missing."""
        return self.frames[2].value

    @property
    def firmware_revision(self) -> int:
        return self.frames[3].value

    @property
    def spo2_display(self) -> int:
        return self.frames[8].value

    @property
    def spo2_fast(self) -> int:
        return self.frames[9].value

    @property
    def spo2_beat_to_beat(self) -> int:
        return self.frames[10].value

    @property
    def e_hr(self) -> int:
        """8-beat extended-average pulse rate (frames 13-14)."""
        return self._hr(13, 14)

    @property
    def e_spo2(self) -> int:
        return self.frames[15].value

    @property
    def e_spo2_display(self) -> int:
        return self.frames[16].value

    @property
    def hr_display(self) -> int:
        return self._hr(19, 20)

    @property
    def e_hr_display(self) -> int:
        return self._hr(21, 22)

    @property
    def flags(self) -> tuple[str, ...]:
        """Union over the frames: status names (bit order), then ``perfusion-<colour>``."""
        named = [name for name in DF2_STATUS if any(name in f.status for f in self.frames)]
        seen = {f.perfusion for f in self.frames}
        named += [f"perfusion-{p}" for p in _PERFUSION[1:] if p in seen]
        return tuple(named)

    def measurement(self, source: str = DF2_KEY) -> Measurement:
        return Measurement(
            source=source,
            raw=self.encode(),
            observations=oximetry_observations(self.spo2, self.hr, PR_MISSING),
            kind=Kind.CONTINUOUS,
            flags=self.flags,
        )


def decode_df2(data: bytes) -> Measurement:
    """One DF2 packet (25 frames, 125 octets) -> Measurement."""
    return NoninDf2Packet.parse(data).measurement()


class NoninDf2Framer(StreamFramer):
    """DF2 stream -> one Measurement per complete 25-frame packet.

    A 5-octet window that fails the start octet, STATUS b7 or checksum is discarded one octet at a
    time (one ``sync`` DecodeError per run) and the packet in progress is dropped. Valid frames
    before the first SYNC frame are skipped silently (joining mid-packet is normal). A SYNC frame
    that arrives before the packet in progress has 25 frames returns a ``packet`` DecodeError.
    """

    def __init__(self, source: str = DF2_KEY) -> None:
        super().__init__(source)
        self._frames: list[NoninDf2Frame] = []
        self._packet_at = 0

    def _on_garbage(self) -> None:
        self._frames = []

    def _held(self) -> tuple[int, str] | None:
        if not self._frames:
            return None
        return self._packet_at, f"input ended inside a packet: {len(self._frames)} of 25 frames"

    def _step(self, buf: bytearray, pos: int) -> Step:
        if len(buf) - pos < DF2_FRAME_LEN:
            return NEED_MORE
        try:
            frame = NoninDf2Frame.parse(bytes(buf[pos : pos + DF2_FRAME_LEN]), self.source)
        except DecodeError as err:
            return Step(1, garbage=f"bad {err.field}: {err.reason}")
        at = self.stream_offset(pos)
        if frame.sync:
            item: Measurement | DecodeError | None = None
            if self._frames:
                item = DecodeError(
                    self.source,
                    "packet",
                    self._packet_at,
                    f"incomplete: {len(self._frames)} of 25 frames before the next SYNC frame",
                )
            self._frames = [frame]
            self._packet_at = at
            return Step(DF2_FRAME_LEN, item)
        if not self._frames:
            return Step(DF2_FRAME_LEN)  # waiting for the first SYNC frame
        self._frames.append(frame)
        if len(self._frames) < DF2_FRAMES:
            return Step(DF2_FRAME_LEN)
        packet = NoninDf2Packet(tuple(self._frames))
        self._frames = []
        try:
            check_spo2(packet.spo2, self.source, "frame 2.spo2", 2 * DF2_FRAME_LEN + 3)
        except DecodeError as err:
            return Step(DF2_FRAME_LEN, rebase(err, self.source, self._packet_at))
        return Step(DF2_FRAME_LEN, packet.measurement(self.source))


# -- Data Format 8 -----------------------------------------------------------------------------
#: DF8 STATUS1: flag name -> bit (b7 always 1; b1-0 are pulse-rate bits 8-7).
DF8_STATUS1: dict[str, int] = {
    "artifact": 2,
    "marginal-perfusion": 3,
    "low-perfusion": 4,
    "out-of-track": 5,
    "sensor-disconnect": 6,
}
#: DF8 STATUS2 bits named by more than one source (see the module docstring).
DF8_STATUS2: dict[str, int] = {"low-battery": 0, "smartpoint": 5}


@dataclass(frozen=True, slots=True)
class NoninDf8Packet:
    """One DF8 packet. ``status2`` is raw (see the module docstring for which bits are named)."""

    status: tuple[str, ...]  # names of the set STATUS1 bits (DF8_STATUS1), in bit order
    pulse_rate: int  # 9 bits, 511 = missing
    spo2: int  # 127 = missing
    status2: int

    def encode(self) -> bytes:
        return bytes(
            (
                0x80 | c.names_to_bits(self.status, DF8_STATUS1) | (self.pulse_rate >> 7 & 0x03),
                self.pulse_rate & 0x7F,
                self.spo2,
                self.status2,
            )
        )

    @classmethod
    def parse(cls, data: bytes, source: str = DF8_KEY) -> Self:
        if len(data) != DF8_LEN:
            raise DecodeError(source, "packet", 0, f"a packet is 4 octets, got {len(data)}")
        if not data[0] & 0x80:
            raise DecodeError(source, "status1", 0, "b7 of STATUS1 must be set")
        if data[1] & 0x80:
            raise DecodeError(source, "hr lsb", 1, "b7 of the HR LSB octet must be clear")
        check_spo2(data[2], source, "spo2", 2)
        status = c.bit_names(data[0], DF8_STATUS1)
        return cls(status, (data[0] & 0x03) << 7 | data[1], data[2], data[3])

    @property
    def flags(self) -> tuple[str, ...]:
        return self.status + c.bit_names(self.status2, DF8_STATUS2)

    def measurement(self, source: str, raw: bytes) -> Measurement:
        return Measurement(
            source=source,
            raw=raw,
            observations=oximetry_observations(self.spo2, self.pulse_rate, PR_MISSING),
            kind=Kind.CONTINUOUS,
            flags=self.flags,
        )


def decode_df8(data: bytes) -> Measurement:
    """One DF8 packet (4 octets) -> Measurement."""
    return NoninDf8Packet.parse(data).measurement(DF8_KEY, bytes(data))


class NoninDf8Framer(StreamFramer):
    """DF8 stream -> one Measurement per 4-octet packet; resynchronises on b7.

    A candidate starts at an octet with b7 set; if the HR LSB or SpO2 octet has b7 set, the
    candidate's first octet is discarded (``sync`` DecodeError per run). Other octets in the
    stream (the 0x06 ACK of the format command, replies to other commands) are discarded the
    same way.
    """

    def __init__(self, source: str = DF8_KEY) -> None:
        super().__init__(source)

    def _step(self, buf: bytearray, pos: int) -> Step:
        if not buf[pos] & 0x80:
            return Step(1, garbage="no STATUS1 (b7 clear)")
        if len(buf) - pos < DF8_LEN:
            return NEED_MORE
        if buf[pos + 1] & 0x80 or buf[pos + 2] & 0x80:
            return Step(1, garbage="b7 set in the HR LSB or SpO2 octet")
        raw = bytes(buf[pos : pos + DF8_LEN])
        try:
            packet = NoninDf8Packet.parse(raw, self.source)
        except DecodeError as err:  # SpO2 101..126
            return Step(DF8_LEN, rebase(err, self.source, self.stream_offset(pos)))
        return Step(DF8_LEN, packet.measurement(self.source, raw))


DRIVERS: tuple[Driver, ...] = (
    Driver(
        key=BLE_KEY,
        name="Nonin 3230/3150 oximeter (BLE)",
        decode=decode_ble,
        transport="ble",
        kind=Kind.CONTINUOUS,
        characteristic=NONIN_OXIMETRY_MEASUREMENT,
        service=NONIN_SERVICE,
        name_patterns=(r"^Nonin3230_", r"^Nonin3150_"),
    ),
    Driver(
        key=DF2_KEY,
        name="Nonin OEM III / Xpod oximeter (serial, Data Format 2)",
        decode=decode_df2,
        transport="serial",
        kind=Kind.CONTINUOUS,
        serial=SerialParams(baudrate=9600),
        framer=lambda: NoninDf2Framer(DF2_KEY),
    ),
    Driver(
        key=DF8_KEY,
        name="Nonin Onyx II 9560 oximeter (Bluetooth SPP, Data Format 8)",
        decode=decode_df8,
        transport="serial",
        kind=Kind.CONTINUOUS,
        name_patterns=(r"^Nonin_Medical_Inc\._\d{6}$",),
        serial=SerialParams(baudrate=9600),  # RFCOMM ignores the line settings
        framer=lambda: NoninDf8Framer(DF8_KEY),
    ),
)

__all__ = [
    "DRIVERS",
    "NoninBleRecord",
    "NoninDf2Frame",
    "NoninDf2Framer",
    "NoninDf2Packet",
    "NoninDf8Framer",
    "NoninDf8Packet",
    "decode_ble",
    "decode_df2",
    "decode_df8",
]
