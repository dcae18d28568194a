"""Contec CMS50D+ (old protocol) on a USB-serial cable: 5-octet live frames at 60 Hz.

Reference §6.3 (19200 8O1 on the real cable; a pty ignores line settings). Frame ``i`` carries the
physiology of second ``i // 60`` and the pleth sample ``i``. Faults (per frame ordinal):
``bad_sync_every`` sets b7 in the pleth octet (the framer loses sync), ``invalid_every`` sends the
finger-out frame (PR 255, SpO2 127), ``garbage_every``/``unplug_after`` as for every pty device.
The old protocol has no checksum: ``bad_checksum_every`` does not apply.
"""

from __future__ import annotations

from drivers.contec import ContecFrame
from simulators.clock import SimTime
from simulators.devices.berrymed import contec_frame
from simulators.faults import SerialFaults
from simulators.physiology import Physiology
from simulators.serial.pty import PtyDevice


class ContecCms50d(PtyDevice):
    rate = 60.0

    def __init__(
        self,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        finger_in_after: int = 0,
        faults: SerialFaults | None = None,
    ) -> None:
        super().__init__(world=world, faults=faults)
        self.physiology = physiology
        self.finger_in_after = finger_in_after  # frames before the finger is detected

    def frame(self, i: int) -> ContecFrame:
        out = i < self.finger_in_after or SerialFaults.hits(self.faults.invalid_every, i)
        return contec_frame(self.physiology, i, int(self.rate), out)

    def unit(self, i: int) -> bytes:
        data = self.frame(i).encode()
        if SerialFaults.hits(self.faults.bad_sync_every, i):
            data = data[:1] + bytes((data[1] | 0x80,)) + data[2:]
        return data
