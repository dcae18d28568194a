"""Contec CMS50D-BT oximeter over BLE: 0xEB frames on 0xFF02 once the hub writes ``9B 01 1C``.

Reference §6.3 and :mod:`drivers.contec_bt`. Service 0xFF12 with the write characteristic 0xFF01
and the notify characteristic 0xFF02. Nothing streams until the start command arrives (on every
connection). Each notification (1 per second) carries ``WAVE_SAMPLES`` waveform frames
(``EB 00 02 pleth CK``) then one parameters frame (``EB 01 05 PR SpO2 7F 00 CK``); an invalid
reading (fault) is PR 255 / SpO2 127. Any other write is answered with "write not permitted"
[M: the real device's answer to an unknown command is not documented].
"""

from __future__ import annotations

import logging

from drivers.contec_bt import (
    CONTEC_BT_NOTIFY,
    CONTEC_BT_SERVICE,
    CONTEC_BT_WRITE,
    START_COMMAND,
    TYPE_PARAMETERS,
    TYPE_WAVEFORM,
    ContecBtFrame,
)
from simulators.ble.gatt import AttError, AttErrorCode, Characteristic, Prop, Service
from simulators.clock import SimTime
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

log = logging.getLogger(__name__)

WAVE_SAMPLES = 2  # 2 x 5 + 8 = 18 octets: one ATT_MTU 23 notification
PR_INVALID = 255
SPO2_INVALID = 127


class ContecBtOximeter(StreamingDevice):
    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str = "SpO208",
        faults: Faults | None = None,
    ) -> None:
        self.physiology = physiology
        self.started = False
        services = [
            Service(
                CONTEC_BT_SERVICE,
                (
                    Characteristic(CONTEC_BT_WRITE, Prop.WRITE, on_write=self._on_write),
                    Characteristic(CONTEC_BT_NOTIFY, Prop.NOTIFY),
                ),
            )
        ]
        super().__init__(
            address,
            name,
            services,
            notify_uuid=CONTEC_BT_NOTIFY,
            interval=1.0,
            world=world,
            faults=faults,
            advertised_services=[CONTEC_BT_SERVICE],
        )

    async def _on_write(self, data: bytes) -> None:
        if bytes(data) != START_COMMAND:
            raise AttError(AttErrorCode.WRITE_NOT_PERMITTED, "unknown command")
        self.started = True

    def is_subscribed(self, uuid: str) -> bool:
        """The stream runs only once subscribed *and* started."""
        return super().is_subscribed(uuid) and (uuid != self.notify_uuid or self.started)

    def on_connect(self) -> None:
        self.started = False
        super().on_connect()

    def payload(self, k: int) -> bytes:
        wave = b"".join(
            ContecBtFrame.build(
                TYPE_WAVEFORM,
                bytes((self.physiology.pleth(k * WAVE_SAMPLES + i, WAVE_SAMPLES)[0] & 0x7F,)),
            ).encode()
            for i in range(WAVE_SAMPLES)
        )
        if k in self.faults.invalid_readings:
            pr, spo2 = PR_INVALID, SPO2_INVALID
        else:
            v = self.physiology.oximetry(k)
            pr, spo2 = int(v.pulse_rate), int(v.spo2)
        params = ContecBtFrame.build(TYPE_PARAMETERS, bytes((pr, spo2, 0x7F, 0x00)))
        return wave + params.encode()
