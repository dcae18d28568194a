"""``telehub edge --config hub.toml``: the agent on a real hub (bleak on BlueZ)."""

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
    from edge.ble.bleak_transport import BleakTransport

    log.info("hub %s: %d device(s) allow-listed", config.hub_id, len(config.devices))
    await run_agent(config, BleakTransport(), stop=stop)
    return 0
