"""Jumper JPD-500F ("My Oximeter") BLE: a byte stream of 0x81 parameter frames on ``CDEACB81-…``.

Reference §6.4. Until a finger is inserted (``idle_notifications``) every notification is idle
octets (0x2D). Then each notification (1 Hz) carries a waveform frame (0x80 and 7-bit samples)
followed by the parameter frame ``81 PR SpO2 PI`` (PI in 0.1 %). Invalid readings (fault) are
``81 FF 7F 00``: PR 255, SpO2 127, PI 0 (the missing markers). [M: the 0x80 frame length is not
documented publicly; the simulator sends 0x80 + 4 samples, which the driver skips.]
"""

from __future__ import annotations

from drivers.jumper import NOTIFY_UUID, PR_MISSING, SERVICE, JumperParams
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import SimTime
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

IDLE = 0x2D
WAVEFORM = 0x80
SPO2_MISSING = 127
WAVE_SAMPLES = 4


class JumperOximeter(StreamingDevice):
    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str = "My Oximeter",
        idle_notifications: int = 2,
        faults: Faults | None = None,
    ) -> None:
        self.physiology = physiology
        self.idle_notifications = idle_notifications
        services = [Service(SERVICE, (Characteristic(NOTIFY_UUID, Prop.NOTIFY),))]
        super().__init__(
            address,
            name,
            services,
            notify_uuid=NOTIFY_UUID,
            interval=1.0,
            world=world,
            faults=faults,
            advertised_services=[SERVICE],
        )

    def params(self, k: int) -> JumperParams | None:
        """The parameter frame of notification ``k`` (None while idle)."""
        if k < self.idle_notifications:
            return None
        if k in self.faults.invalid_readings:
            return JumperParams(PR_MISSING, SPO2_MISSING, 0)
        v = self.physiology.oximetry(k)
        return JumperParams(int(v.pulse_rate), int(v.spo2), int(v.pai.scaleb(1)))

    def payload(self, k: int) -> bytes:
        params = self.params(k)
        if params is None:
            return bytes((IDLE,)) * 8
        wave = bytes(
            self.physiology.pleth(k * WAVE_SAMPLES + i, WAVE_SAMPLES)[0] & 0x7F
            for i in range(WAVE_SAMPLES)
        )
        return bytes((WAVEFORM,)) + wave + params.encode()
