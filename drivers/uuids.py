"""Bluetooth UUID normalisation for the registry (drivers must not import the edge's BLE seam).

Same convention as ``edge.ble.transport.normalize_uuid``: lower-case 128-bit text form; 16- and
32-bit SIG numbers are expanded on the Bluetooth base UUID.
"""

from __future__ import annotations

import uuid

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The full 128-bit UUID string of a 16-bit Bluetooth SIG number."""
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


def normalize(text: str) -> str:
    """``2a35``, ``0x2A35``, ``00002A35`` or a full UUID -> the lower-case 128-bit form.

    Raises ValueError for anything that is not a UUID.
    """
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) in (4, 8):
        int(t, 16)  # ValueError if not hex
        return f"{t.rjust(8, '0')}{BASE_UUID_SUFFIX}"
    return str(uuid.UUID(t))


def short(full: str) -> str | None:
    """The 4-hex-digit SIG number of a base-UUID characteristic, else None."""
    u = normalize(full)
    if u.startswith("0000") and u.endswith(BASE_UUID_SUFFIX):
        return u[4:8]
    return None
