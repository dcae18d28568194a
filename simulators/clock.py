"""Simulated time: a world clock that can run faster than real time, and device clocks on top.

:class:`SimTime` is the one time base of a simulated household. ``speed`` stretches it: at
``speed=100`` one simulated second passes in 10 ms of real time, so a 1 Hz oximeter sends 100
notifications per real second and an A&D "5 s" wait lasts 50 ms. Devices sleep and time out in
simulated seconds through it; everything the edge does (its own timeouts) stays in real seconds.

:class:`DeviceClock` is what a device believes the time is: the world time plus an offset plus
drift, settable by the central (Current Time / Date Time write) and resettable to the factory
default 2000-01-01 00:00:00 (battery change), which is what real A&D devices fall back to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from drivers.observation import DeviceTime

log = logging.getLogger(__name__)

FACTORY_TIME = datetime(2000, 1, 1, 0, 0, 0)
DEFAULT_START = datetime(2024, 5, 17, 8, 0, 0)


class SimTime:
    """World time: real monotonic time scaled by ``speed``, starting at ``start`` (local, naive)."""

    def __init__(self, start: datetime = DEFAULT_START, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        """Simulated seconds since this world started."""
        return (time.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        """The true local wall-clock time of the simulated world."""
        return self.start + timedelta(seconds=self.elapsed())

    def real(self, sim_seconds: float) -> float:
        """Real seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self.speed

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(max(sim_seconds, 0.0) / self.speed)

    async def sleep_until(self, sim_elapsed: float) -> None:
        """Sleep until :meth:`elapsed` reaches ``sim_elapsed`` (drift-free periodic schedules)."""
        await self.sleep(sim_elapsed - self.elapsed())


class DeviceClock:
    """A device's own wall clock: ``world + offset + drift``, settable and resettable."""

    def __init__(
        self,
        world: SimTime,
        *,
        offset: timedelta = timedelta(0),
        drift_ppm: float = 0.0,
        is_set: bool = True,
    ) -> None:
        self.world = world
        self.drift_ppm = drift_ppm
        self.is_set = is_set
        # Device time at the reference instant; a clock that was never set runs from the factory
        # default. One reading of the world clock, so that fast worlds stay consistent.
        self._ref = world.elapsed()  # world elapsed seconds at the reference instant
        start = world.start + timedelta(seconds=self._ref) if is_set else FACTORY_TIME
        self._base = start + offset
        self.sets = 0  # how many times the central set the clock

    def now(self) -> datetime:
        return self._at(self.world.elapsed())

    def _at(self, elapsed: float) -> datetime:
        dt = elapsed - self._ref
        return self._base + timedelta(seconds=dt * (1.0 + self.drift_ppm / 1e6))

    def device_time(self) -> DeviceTime:
        """The clock as a GATT Date Time (whole seconds, as devices send it)."""
        t = self.now()
        return DeviceTime(t.year, t.month, t.day, t.hour, t.minute, t.second)

    def set(self, value: datetime) -> None:
        """The central wrote the time: the clock shows ``value`` from now on (drift restarts)."""
        self._base = value
        self._ref = self.world.elapsed()
        self.is_set = True
        self.sets += 1

    def reset(self) -> None:
        """Fault: power loss / battery change: back to the factory default 2000-01-01 00:00:00."""
        self._base = FACTORY_TIME
        self._ref = self.world.elapsed()
        self.is_set = False
        log.info("device clock reset to factory default")

    def offset(self) -> timedelta:
        """How far the device clock is ahead of world time (negative: behind)."""
        e = self.world.elapsed()
        return self._at(e) - (self.world.start + timedelta(seconds=e))
