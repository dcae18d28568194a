"""``telehub edge --config hub.toml``: the agent on a real hub (bleak on BlueZ), or on a
simulated radio in another process (``[ble] transport = "simulated"``, ``telehub simulate``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge.config import ConfigError, load_config

log = logging.getLogger(__name__)


async def run_from_config(path: Path, stop: asyncio.Event) -> int:
    """Load the configuration and run the agent until ``stop``; 2 on a configuration error."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    from edge.agent import run_agent
    from edge.ble.transport import BleTransport

    transport: BleTransport
    if config.ble.transport == "simulated" and config.ble.simulator is not None:
        from edge.ble.remote_transport import RemoteRadio

        transport = RemoteRadio(config.ble.simulator)
        log.info("BLE through the simulated radio at %s", config.ble.simulator)
    else:
        from edge.ble.bleak_transport import BleakTransport

        transport = BleakTransport()
    log.info("hub %s: %d device(s) allow-listed", config.hub_id, len(config.devices))
    try:
        await run_agent(config, transport, stop=stop)
    finally:
        aclose = getattr(transport, "aclose", None)
        if aclose is not None:
            await aclose()
    return 0
