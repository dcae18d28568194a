"""Nonin serial oximeters: Data Format 2 (OEM III / Xpod) and Data Format 8 (Onyx II 9560 SPP).

**DF2** (reference §6.2): 5-octet frames ``01 | STATUS | PLETH | FLOAT | CHK`` at 75 frames/s,
25 frames per packet (SYNC bit in frame 0 only). Packet ``p`` carries the physiology of second
``p // 3``: HR in frames 0-1 (bits 8-7, then 7 bits), SpO2 in frame 2, firmware revision in frame
3, display/fast/beat-to-beat/extended values in frames 8-10, 13-16, 19-22 (the same numbers: the
simulator does not model averaging), 0 elsewhere. Perfusion green. Units are frames.

**DF8**: nothing is sent until the host writes the format command ``02 70 02 02 08 03``; the device
answers ACK ``06`` and then sends one 4-octet packet per second. Units are packets.

Faults: ``bad_checksum_every`` (DF2: CHK + 1), ``bad_sync_every`` (DF2: start octet 0x00; DF8:
b7 of STATUS1 cleared), ``invalid_every`` (DF2: per packet; DF8: per packet): HR 511, SpO2 127
with "sensor-disconnect".
"""

from __future__ import annotations

import logging
from typing import Literal

from drivers.nonin import (
    DF2_FRAMES,
    PR_MISSING,
    NoninDf2Frame,
    NoninDf2Packet,
    NoninDf8Packet,
)
from simulators.clock import SimTime
from simulators.faults import SerialFaults
from simulators.physiology import Physiology
from simulators.serial.pty import PtyDevice

log = logging.getLogger(__name__)

SPO2_MISSING = 127
FIRMWARE_REVISION = 0x2A
DF8_SELECT = bytes((0x02, 0x70, 0x02, 0x02, 0x08, 0x03))
ACK = 0x06
DF8_SMARTPOINT = 0x20  # STATUS2 b5
PACKETS_PER_SECOND = 3  # DF2: 75 frames/s / 25


def _hr_pair(hr: int) -> tuple[int, int]:
    return (hr >> 7) & 0x03, hr & 0x7F


class NoninSerial(PtyDevice):
    def __init__(
        self,
        physiology: Physiology,
        *,
        data_format: Literal[2, 8] = 2,
        world: SimTime | None = None,
        faults: SerialFaults | None = None,
    ) -> None:
        super().__init__(world=world, faults=faults)
        self.physiology = physiology
        self.data_format = data_format
        self.rate = 75.0 if data_format == 2 else 1.0
        self.selected = data_format == 2  # DF8 waits for its format command

    # -- DF2 --------------------------------------------------------------------------------------
    def packet(self, p: int) -> NoninDf2Packet:
        """DF2 packet ``p`` (without the frame-level faults)."""
        status: tuple[str, ...] = ()
        if SerialFaults.hits(self.faults.invalid_every, p):
            hr, spo2, status = PR_MISSING, SPO2_MISSING, ("sensor-disconnect",)
        else:
            v = self.physiology.oximetry(p // PACKETS_PER_SECOND)
            hr, spo2 = int(v.pulse_rate), int(v.spo2)
        hr_msb, hr_lsb = _hr_pair(hr)
        values = [0] * DF2_FRAMES
        values[0], values[1], values[2], values[3] = hr_msb, hr_lsb, spo2, FIRMWARE_REVISION
        for idx in (8, 9, 10, 15, 16):
            values[idx] = spo2
        for msb, lsb in ((13, 14), (19, 20), (21, 22)):
            values[msb], values[lsb] = hr_msb, hr_lsb
        frames = tuple(
            NoninDf2Frame(
                sync=j == 0,
                perfusion="green",
                status=status,
                pleth=self.physiology.pleth(p * DF2_FRAMES + j, 75)[0],
                value=values[j],
            )
            for j in range(DF2_FRAMES)
        )
        return NoninDf2Packet(frames)

    def _df2_frame(self, i: int) -> bytes:
        data = bytearray(self.packet(i // DF2_FRAMES).frames[i % DF2_FRAMES].encode())
        if SerialFaults.hits(self.faults.bad_checksum_every, i):
            data[4] = (data[4] + 1) & 0xFF
        if SerialFaults.hits(self.faults.bad_sync_every, i):
            data[0] = 0x00
        return bytes(data)

    # -- DF8 --------------------------------------------------------------------------------------
    def df8_packet(self, p: int) -> NoninDf8Packet:
        if SerialFaults.hits(self.faults.invalid_every, p):
            return NoninDf8Packet(("sensor-disconnect",), PR_MISSING, SPO2_MISSING, 0)
        v = self.physiology.oximetry(p)
        return NoninDf8Packet((), int(v.pulse_rate), int(v.spo2), DF8_SMARTPOINT)

    def _df8(self, p: int) -> bytes:
        data = bytearray(self.df8_packet(p).encode())
        if SerialFaults.hits(self.faults.bad_sync_every, p):
            data[0] &= 0x7F
        return bytes(data)

    # -- PtyDevice --------------------------------------------------------------------------------
    def unit(self, i: int) -> bytes:
        return self._df2_frame(i) if self.data_format == 2 else self._df8(i)

    def transmitting(self) -> bool:
        return self.selected

    def on_input(self, data: bytes) -> None:
        if self.data_format == 8 and DF8_SELECT in bytes(self.input):
            self.input.clear()
            if not self.selected:
                log.info("%s: data format 8 selected", self.port)
            self.selected = True
            self.inject(bytes((ACK,)))
