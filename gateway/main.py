"""``telehub gateway`` and ``telehub db``: the gateway's command-line entry points.

Settings come from the environment (``TELEHUB_*``, see :class:`gateway.settings.GatewaySettings`).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import psycopg
from pydantic import ValidationError

from gateway.db import MigrationError, migrate
from gateway.fleet import FleetError, apply_fleet, load_fleet
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def _settings(database_url: str | None = None) -> GatewaySettings:
    if database_url:
        return GatewaySettings(database_url=database_url)
    return GatewaySettings()


async def run_from_env(stop: asyncio.Event, *, migrate_first: bool = False) -> int:
    """Run ingester + alerting + webhook delivery + API until ``stop``; 2 on bad settings."""
    try:
        settings = _settings()
    except ValidationError as exc:
        log.error("invalid TELEHUB_* settings: %s", exc)
        return 2
    if migrate_first:
        mode = await asyncio.to_thread(migrate, settings.database_url)
        log.info("database migrated (%s)", mode)
    from gateway.service import run_gateway

    await run_gateway(settings, stop=stop)
    return 0


async def run_ingester_from_env(stop: asyncio.Event) -> int:
    """Only the ingester (no API, no webhook worker): for scaling ingest out and for tests."""
    try:
        settings = _settings()
    except ValidationError as exc:
        log.error("invalid TELEHUB_* settings: %s", exc)
        return 2
    from gateway.ingest import run_ingester

    await run_ingester(settings, stop=stop)
    return 0


def db_command(action: str, *, database_url: str | None, fleet: str | None) -> int:
    """``telehub db migrate`` / ``telehub db status`` / ``telehub db seed FLEET.toml``."""
    settings = _settings(database_url)
    try:
        if action == "status":
            from gateway.db.status import db_status

            with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
                status = db_status(lambda sql: conn.execute(sql.encode()).fetchall())
            sys.stdout.write(status.render() + "\n")
            return 0
        if action == "migrate":
            mode = migrate(settings.database_url)
            sys.stdout.write(f"database migrated: readings storage is {mode}\n")  # the result
            return 0
        if fleet is None:
            log.error("telehub db seed needs a fleet file (TOML)")
            return 2
        spec = load_fleet(fleet)
        migrate(settings.database_url)
        with psycopg.connect(settings.database_url) as conn:
            apply_fleet(conn, spec)
        log.warning(
            "fleet applied: %d orgs, %d patients, %d hubs, %d devices, %d rules",
            len(spec.orgs),
            len(spec.patients),
            len(spec.hubs),
            len(spec.devices),
            len(spec.rules),
        )
        return 0
    except (FleetError, MigrationError) as exc:
        log.error("%s", exc)
        return 2
    except psycopg.OperationalError as exc:
        log.error("cannot reach the database: %s", exc)
        return 1
