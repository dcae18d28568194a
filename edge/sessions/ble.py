"""One BLE session: connect, discover, pick the procedure, run it, disconnect.

Procedure choice from the discovered characteristics: Glucose Measurement + RACP -> glucose
(:mod:`edge.sessions.glucose`); any continuous-stream driver -> continuous
(:mod:`edge.sessions.continuous`); else spot-check (:mod:`edge.sessions.spot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from edge.ble.transport import BleLink, TransportError, normalize_uuid
from edge.config import DeviceBinding
from edge.sessions.common import SessionEnv
from edge.sessions.continuous import is_continuous, run_continuous
from edge.sessions.gatt import GattConnection, SessionAborted
from edge.sessions.glucose import is_glucose, run_glucose
from edge.sessions.spot import run_spot

log = logging.getLogger(__name__)

__all__ = ["SessionAborted", "choose_procedure", "run_ble_session"]


def choose_procedure(conn: GattConnection) -> str:
    if is_glucose(conn.chars):
        return "glucose"
    if is_continuous(conn.known()):
        return "continuous"
    return "spot"


async def run_ble_session(
    env: SessionEnv, binding: DeviceBinding, link: BleLink, stop: asyncio.Event
) -> str:
    """Run one connection to ``binding``'s device; return how it ended ("disconnected", "idle",
    "stopped", "complete", "no-records"). Raises TransportError or SessionAborted on failure."""
    cfg = env.config.ble
    device = binding.device_id
    try:
        await link.connect(cfg.connect_timeout)
    except TransportError:
        env.state.count("ble.connect_failed")
        raise
    t0 = time.monotonic()  # the device's clock-write deadline runs from here
    env.state.seen(device)
    env.state.count("ble.connections")
    try:
        chars = {normalize_uuid(c) for c in await link.characteristics()}
        conn = GattConnection(env, binding, link, chars)
        conn.connected_at = t0
        procedure = choose_procedure(conn)
        log.info("%s: connected, %s procedure", device, procedure)
        if procedure == "glucose":
            return await run_glucose(conn, stop)
        if procedure == "continuous":
            return await run_continuous(conn, stop)
        return await run_spot(conn, stop)
    except SessionAborted as exc:
        env.state.count("ble.sessions_aborted")
        log.warning("%s: session aborted: %s", device, exc)
        raise
    finally:
        with contextlib.suppress(TransportError, TimeoutError):
            await asyncio.wait_for(link.disconnect(), cfg.gatt_timeout)
