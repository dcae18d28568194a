"""Continuous oximetry procedure: PLX Continuous Measurement 0x2A5F or a vendor stream (Nonin BLE,
BerryMed/Jumper UART frames through the registry's framer).

Downsampling: at most one record per second per device is stored (the first record of each second
of hub receive time, see :class:`edge.sessions.common.RecordSink`); the others are counted. The
stream has no timestamps: readings carry the hub's receive time (``time_source="hub"``). Spot-check
records on the same device (PLX 0x2A5E) are stored as they come.

The session lasts while the device streams: it ends when the device disconnects, on stop, or when
nothing arrived for ``idle_timeout`` seconds (a stalled stream); the agent reconnects when the
device advertises again.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.driver import Driver
from drivers.observation import Kind
from edge.sessions.gatt import GattConnection, SessionAborted

log = logging.getLogger(__name__)


def is_continuous(drivers: dict[str, Driver]) -> bool:
    return any(d.kind is Kind.CONTINUOUS for d in drivers.values())


async def run_continuous(conn: GattConnection, stop: asyncio.Event) -> str:
    await conn.set_clock_early()
    if not await conn.subscribe_known():
        raise SessionAborted("no stream characteristic could be subscribed")
    await conn.write_start_commands()
    await conn.set_clock_late()
    await conn.read_battery()
    end = await conn.wait_end(stop, conn.env.config.ble.idle_timeout)
    if conn.failed is not None:
        raise SessionAborted(f"transfer refused: {type(conn.failed).__name__}")
    log.info(
        "%s: continuous session ended (%s): %d record(s), %d new reading(s)",
        conn.binding.device_id,
        end,
        conn.sink.records,
        conn.sink.stored,
    )
    return end
