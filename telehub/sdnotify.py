"""systemd notification protocol (sd_notify) for ``Type=notify`` units, and the watchdog.

``READY=1`` once the service runs, ``WATCHDOG=1`` every half ``WatchdogSec`` *from the event
loop* (a blocked loop stops feeding it, so systemd restarts the service), ``STOPPING=1`` on the
way out. Without ``$NOTIFY_SOCKET`` (not under systemd) everything here is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

WATCHDOG_FLOOR = 0.05  # seconds: never spin faster than this, whatever WATCHDOG_USEC says


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):  # abstract namespace
        return "\0" + addr[1:]
    return addr


def notify(state: str) -> bool:
    """Send one datagram (``READY=1``, ``WATCHDOG=1``, ...); False if not under systemd."""
    addr = _address()
    if addr is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(1.0)
        try:
            s.connect(addr)
            s.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for (``WATCHDOG_USEC``), or None if none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        period = int(usec) / 1_000_000
    except ValueError:
        return None
    return max(period / 2, WATCHDOG_FLOOR) if period > 0 else None


async def feed_watchdog(stop: asyncio.Event) -> None:
    """Send ``WATCHDOG=1`` from the event loop until ``stop``; returns at once without one."""
    interval = watchdog_interval()
    if interval is None or _address() is None:
        return
    while not stop.is_set():
        notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
