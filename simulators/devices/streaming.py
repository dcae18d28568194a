"""Base of the BLE devices that stream notifications while a central listens (vendor oximeters,
heart-rate straps).

The device advertises whenever it is on and not connected. While connected and subscribed to its
notify characteristic it sends ``payload(k)`` every ``interval`` simulated seconds on a drift-free
schedule, ``k`` being the device's lifetime notification ordinal (the ordinal the faults use).
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.ble.transport import normalize_uuid
from simulators.ble.gatt import Service
from simulators.ble.peripheral import Peripheral
from simulators.clock import SimTime
from simulators.faults import Faults


class StreamingDevice(Peripheral):
    """Subclasses implement :meth:`payload`."""

    def __init__(
        self,
        address: str,
        name: str,
        services: Sequence[Service],
        *,
        notify_uuid: str,
        interval: float,
        world: SimTime | None = None,
        faults: Faults | None = None,
        advertised_services: Sequence[str] = (),
    ) -> None:
        super().__init__(
            address, name, services, world=world, advertised_services=advertised_services
        )
        self.notify_uuid = normalize_uuid(notify_uuid)
        self.interval = interval
        self.faults = faults if faults is not None else Faults()
        self.sent = 0  # notifications sent (lifetime): the next payload's ordinal
        self.sent_on_link = 0
        self.start_advertising()

    def payload(self, k: int) -> bytes:
        """The bytes of notification ``k`` (value faults applied; truncation is applied after)."""
        raise NotImplementedError

    def on_connect(self) -> None:
        self.sent_on_link = 0
        self.spawn(self._stream(), "stream")

    def on_disconnect(self, reason: str) -> None:
        self.start_advertising()

    async def _stream(self) -> None:
        start = self.world.elapsed()
        tick = 0
        while self.connected:
            if self.is_subscribed(self.notify_uuid):
                limit = self.faults.disconnect_after
                if limit is not None and self.sent_on_link >= limit:
                    await self.disconnect("fault: disconnect mid-stream")
                    return
                k = self.sent
                data = self.faults.truncate(k, self.payload(k))
                self.sent += 1
                self.sent_on_link += 1
                for _ in range(2 if self.faults.duplicate else 1):
                    await self.notify(self.notify_uuid, data)
            tick += 1
            await self.world.sleep_until(start + tick * self.interval)
