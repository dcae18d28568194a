"""Time on the hub: is our own clock synchronised, and device wall-clock time -> UTC.

Device clocks are local wall-clock time with no zone (reference §1.2, §8.8). The hub resolves them
in its configured IANA zone. Twice a year that is not a function:

* in the autumn overlap (02:30 happens twice in Europe/Copenhagen) the time is **ambiguous**;
* in the spring gap (02:30 never happens) the time is **non-existent**.

In both cases the first reading (``fold=0``, the pre-transition offset) is used and the reading is
flagged ``time-ambiguous`` / ``time-nonexistent``: never a silent guess.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from wire.contract import HubClock

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
FLAG_AMBIGUOUS = "time-ambiguous"
FLAG_NONEXISTENT = "time-nonexistent"

_TIME_ERROR = 5  # adjtimex(2) return value: clock not synchronised


def hub_clock_state(flag: Path = TIMESYNC_FLAG) -> HubClock:
    """``synchronized`` if systemd-timesyncd says so or the kernel (adjtimex) does; else
    ``unsynchronized`` when the kernel says it is not, ``unknown`` when nobody can tell."""
    if flag.exists():
        return "synchronized"
    state = _adjtimex_state()
    if state is None:
        return "unknown"
    return "unsynchronized" if state == _TIME_ERROR else "synchronized"


def _adjtimex_state() -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None
    # struct timex is < 256 octets on every Linux ABI; modes = 0 (first field) is a pure query.
    buf = ctypes.create_string_buffer(512)
    with contextlib.suppress(AttributeError):
        rc = int(libc.adjtimex(buf))
        return None if rc < 0 else rc
    return None


class HubClockCache:
    """``hub_clock_state()`` at most once per ``ttl`` seconds (it is asked for every record)."""

    def __init__(self, ttl: float = 30.0, flag: Path = TIMESYNC_FLAG) -> None:
        self._ttl = ttl
        self._flag = flag
        self._at = -1e18
        self._state: HubClock = "unknown"

    def __call__(self) -> HubClock:
        now = time.monotonic()
        if now - self._at >= self._ttl:
            self._state = hub_clock_state(self._flag)
            self._at = now
        return self._state


def local_to_utc(naive: datetime, tz: ZoneInfo) -> tuple[datetime, tuple[str, ...]]:
    """A device's local wall-clock time in ``tz`` -> (UTC time, flags)."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    utc = first.astimezone(UTC)
    if first.utcoffset() == second.utcoffset():
        return utc, ()
    # Offsets differ: either the wall time happens twice (overlap) or never (gap). A time that
    # exists round-trips through UTC to the same wall-clock reading.
    back = utc.astimezone(tz).replace(tzinfo=None)
    flag = FLAG_AMBIGUOUS if back == naive else FLAG_NONEXISTENT
    return utc, (flag,)


def now_local(tz: ZoneInfo) -> datetime:
    """The hub's current local wall-clock time in ``tz`` (what a device clock is set to)."""
    return datetime.now(tz)
