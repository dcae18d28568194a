"""Faults a simulated device injects on demand: one small frozen object per device.

Assign a new value at any time (``device.faults = Faults(disconnect_after=2)``); devices read it
when they act. Reading ordinals count the readings a device has *taken* (0 = its first), so a test
can say exactly which reading is bad; per-connection counts restart on every link.

Which faults a family honours is listed in docs/simulators.md; "invalid" means the family's own
"no valid value" marker (scale 0xFFFF Measurement Unsuccessful, BP/PLX/thermometer NaN, vendor
oximeters SpO2 127 / PR 255 or 511), exactly as the real device sends it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Faults:
    """BLE device faults."""

    # Transfer faults (per connection).
    disconnect_after: int | None = None  # device drops the link after k confirmed records
    cut_during: int | None = None  # link drops while record k awaits confirmation (not delivered)
    duplicate: bool = False  # every record is sent twice (the second after the first confirmed)
    ignore_time_write: bool = False  # accepts the time write but keeps its own (wrong) clock
    # Value faults (by reading ordinal).
    invalid_readings: frozenset[int] = frozenset()  # sent as the family's invalid marker
    truncate_readings: frozenset[int] = frozenset()  # sent with the last octets missing
    truncate_to: int = 3  # octets kept of a truncated record
    clock_reset_before: int | None = None  # clock back to 2000-01-01 before reading k is taken

    def truncate(self, ordinal: int, data: bytes) -> bytes:
        return data[: self.truncate_to] if ordinal in self.truncate_readings else data


@dataclass(frozen=True, slots=True)
class SerialFaults:
    """Serial (pty) device faults; counts are frames written since start (0-based)."""

    bad_checksum_every: int | None = None  # every n-th frame/packet has a wrong checksum
    bad_sync_every: int | None = None  # every n-th frame has its sync marker broken
    garbage_every: int | None = None  # garbage octets are written before every n-th frame
    garbage: bytes = b"\x00\xff\x13\x37"
    invalid_every: int | None = None  # every n-th sample carries the vendor's "missing" markers
    unplug_after: int | None = None  # the cable is pulled after n frames (the pty closes)

    @staticmethod
    def hits(every: int | None, n: int) -> bool:
        return every is not None and every > 0 and n % every == every - 1
