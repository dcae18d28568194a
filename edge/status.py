"""What the hub knows about itself: counters, devices last seen, battery levels -> HubStatus.

The wire :class:`wire.contract.HubStatus` has no place for counters or battery levels yet, so the
edge publishes subclasses that add them (``counters`` on the status, ``battery`` per device). The
gateway's decoder ignores unknown fields; whoever stores the raw status JSON keeps them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from wire import contract

#: Devices kept in the status (most recently seen first); the hub has a handful.
MAX_DEVICES_IN_STATUS = 64


# The contract carries battery and counters itself; these names stay for the edge's callers.
DeviceStatus = contract.DeviceSeen
EdgeHubStatus = contract.HubStatus


@dataclass(slots=True)
class _Device:
    last_seen: datetime
    battery: int | None = None


class HubState:
    """Shared, in-memory, single event loop: sessions write it, the uplink reads it."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self._devices: dict[str, _Device] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def seen(self, device: str, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        d = self._devices.get(device)
        if d is None:
            self._devices[device] = _Device(at)
        elif at > d.last_seen:
            d.last_seen = at

    def battery(self, device: str, level: int) -> None:
        self.seen(device)
        self._devices[device].battery = level

    def device_battery(self, device: str) -> int | None:
        d = self._devices.get(device)
        return None if d is None else d.battery

    def status(
        self,
        hub: str,
        state: Literal["online", "offline"],
        outbox: contract.OutboxState | None,
    ) -> EdgeHubStatus:
        devices = sorted(self._devices.items(), key=lambda kv: kv[1].last_seen, reverse=True)
        return EdgeHubStatus(
            hub=hub,
            state=state,
            at=datetime.now(UTC),
            outbox=outbox,
            devices=[
                DeviceStatus(name, d.last_seen, battery=d.battery)
                for name, d in devices[:MAX_DEVICES_IN_STATUS]
            ],
            counters=dict(sorted(self.counters.items())),
        )
