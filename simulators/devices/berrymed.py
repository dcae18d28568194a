"""BerryMed BCI oximeter over BLE: 5-octet Contec-layout frames on the ISSC transparent UART.

Reference §6.3: service ``49535343-FE7D-…``, notify ``49535343-1E4D-…``; 60 frames per second
[M: rate as the old Contec protocol]. The UART stream is cut into notifications of
``frames_per_notification`` frames (4 = 20 octets, the ATT_MTU 23 payload), 15 per second.
While the finger is out (the first ``search_notifications``, or an invalid reading) frames carry
PR 255 / SpO2 127 with "searching" / "probe error (no finger)".
"""

from __future__ import annotations

from drivers.contec import (
    ISSC_UART_NOTIFY,
    ISSC_UART_SERVICE,
    PR_MISSING,
    SPO2_MISSING,
    ContecFrame,
)
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import SimTime
from simulators.devices.streaming import StreamingDevice
from simulators.faults import Faults
from simulators.physiology import Physiology

FRAME_RATE = 60


def contec_frame(physiology: Physiology, i: int, rate: int, finger_out: bool) -> ContecFrame:
    """Live frame ``i`` of a Contec/BerryMed stream at ``rate`` frames per second."""
    if finger_out:
        return ContecFrame(
            signal_strength=0,
            finger_out=True,
            spo2_dropping=False,
            pulse_beep=False,
            pleth=0,
            bar_graph=0,
            probe_error=True,
            searching=True,
            pulse_rate=PR_MISSING,
            spo2=SPO2_MISSING,
        )
    v = physiology.oximetry(i // rate)
    pleth, beat = physiology.pleth(i, rate)
    return ContecFrame(
        signal_strength=6,
        finger_out=False,
        spo2_dropping=False,
        pulse_beep=beat,
        pleth=pleth,
        bar_graph=min(15, pleth // 8),
        probe_error=False,
        searching=False,
        pulse_rate=int(v.pulse_rate),
        spo2=int(v.spo2),
    )


class BerryMedOximeter(StreamingDevice):
    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str = "BerryMed",
        frames_per_notification: int = 4,
        search_notifications: int = 15,
        faults: Faults | None = None,
    ) -> None:
        self.physiology = physiology
        self.frames_per_notification = frames_per_notification
        self.search_notifications = search_notifications
        services = [Service(ISSC_UART_SERVICE, (Characteristic(ISSC_UART_NOTIFY, Prop.NOTIFY),))]
        super().__init__(
            address,
            name,
            services,
            notify_uuid=ISSC_UART_NOTIFY,
            interval=frames_per_notification / FRAME_RATE,
            world=world,
            faults=faults,
            advertised_services=[ISSC_UART_SERVICE],
        )

    def frames(self, k: int) -> tuple[ContecFrame, ...]:
        """The frames of notification ``k``."""
        out = k < self.search_notifications or k in self.faults.invalid_readings
        first = k * self.frames_per_notification
        return tuple(
            contec_frame(self.physiology, first + j, FRAME_RATE, out)
            for j in range(self.frames_per_notification)
        )

    def payload(self, k: int) -> bytes:
        return b"".join(f.encode() for f in self.frames(k))
