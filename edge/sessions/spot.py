"""Spot-check procedure: subscribe, set the clock, take whatever the device sends, until it
disconnects (A&D devices do after their upload) or nothing came for ``idle_timeout`` seconds."""

from __future__ import annotations

import asyncio
import logging

from edge.sessions.gatt import GattConnection, SessionAborted

log = logging.getLogger(__name__)


async def run_spot(conn: GattConnection, stop: asyncio.Event) -> str:
    await conn.set_clock_early()
    if not await conn.subscribe_known():
        raise SessionAborted("no characteristic the registry knows could be subscribed")
    await conn.set_clock_late()
    await conn.read_battery()
    conn.sink.last_activity = max(conn.sink.last_activity, conn.connected_at)
    end = await conn.wait_end(stop, conn.env.config.ble.idle_timeout)
    if conn.failed is not None:
        raise SessionAborted(f"transfer refused: {type(conn.failed).__name__}")
    log.info(
        "%s: spot session ended (%s): %d record(s), %d new reading(s)",
        conn.binding.device_id,
        end,
        conn.sink.records,
        conn.sink.stored,
    )
    return end
