"""Device bindings (which patient a device on a hub belongs to), cached in memory.

The cache holds every ``devices`` row and the set of known hubs. A lookup that misses (unknown
device, unknown hub, or a patient that differs from the cached binding) reloads the cache from the
database, at most once every ``refresh_interval`` seconds, so a device bound a moment ago is
accepted without a restart while a flood of unknown devices cannot hammer the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from gateway.ingest.model import NormalizedReading, Reject

log = logging.getLogger(__name__)


class DeviceCache:
    def __init__(
        self, refresh_interval: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._bindings: dict[tuple[str, str], str] = {}
        self._hubs: set[str] = set()
        self._loaded_at: float | None = None
        self.loads = 0

    async def load(self, conn: psycopg.AsyncConnection[Any]) -> None:
        cur = await conn.execute("SELECT hub_id, device_id, patient_id FROM devices")
        bindings = {(h, d): p for h, d, p in await cur.fetchall()}
        cur = await conn.execute("SELECT hub_id FROM hubs")
        self._hubs = {h for (h,) in await cur.fetchall()}
        self._bindings = bindings
        self._loaded_at = self._clock()
        self.loads += 1
        log.debug("device cache loaded: %d hubs, %d devices", len(self._hubs), len(bindings))

    async def _maybe_reload(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        if self._loaded_at is not None and self._clock() - self._loaded_at < self.refresh_interval:
            return False
        await self.load(conn)
        return True

    def known_hub(self, hub: str) -> bool:
        """Whether ``hub`` is in the cache (no reload: the fast path of :meth:`hub_known`)."""
        return hub in self._hubs

    async def hub_known(self, conn: psycopg.AsyncConnection[Any], hub: str) -> bool:
        if hub in self._hubs:
            return True
        return await self._maybe_reload(conn) and hub in self._hubs

    def bound(self, hub: str, device: str) -> str | None:
        """The patient ``device`` is bound to on ``hub`` per the cache (no reload: the fast path;
        a reading whose patient differs goes through :meth:`check`)."""
        return self._bindings.get((hub, device))

    async def check(
        self, conn: psycopg.AsyncConnection[Any], reading: NormalizedReading
    ) -> Reject | None:
        """None if ``reading``'s device is bound on its hub to its patient, else the rejection."""
        k = (reading.hub_id, reading.device_id)
        bound = self._bindings.get(k)
        if bound != reading.patient_id and await self._maybe_reload(conn):
            bound = self._bindings.get(k)
        if bound is None:
            return Reject(
                "device-unknown",
                f"device: {reading.device_id!r} is not bound on hub {reading.hub_id!r}",
                reading.key,
            )
        if bound != reading.patient_id:
            return Reject(
                "patient-mismatch",
                f"patient: reading says {reading.patient_id!r} but device {reading.device_id!r} "
                f"on hub {reading.hub_id!r} is bound to {bound!r}",
                reading.key,
            )
        return None
