"""LISTEN on a PostgreSQL channel over a dedicated connection that reconnects by itself.

NOTIFY is delivered only to sessions that are listening at commit time, so every consumer that
relies on it (the live stream, the webhook worker) also catches up after each (re)connect
(``on_connected``) and the webhook worker polls as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Callable[[str], None],
    *,
    on_connected: Callable[[], Awaitable[None]] | None = None,
    connect_timeout: float = 10.0,
    check_interval: float = 30.0,
    retry_min: float = 0.5,
    retry_max: float = 30.0,
) -> NoReturn:
    """Call ``on_notify(payload)`` for every notification on ``channel``, until cancelled.

    ``on_connected`` is awaited after each successful LISTEN (before notifications are read, but
    after LISTEN, so nothing committed after the catch-up can be missed). When no notification
    arrives for ``check_interval`` seconds the connection is probed with ``SELECT 1`` so that a
    silently dead TCP connection is noticed and replaced.
    """
    delay = retry_min
    while True:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation
            async with asyncio.timeout(connect_timeout + 1):
                conn = await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout))
                )
        except (psycopg.OperationalError, TimeoutError) as exc:
            log.warning(
                "LISTEN %s: cannot connect (%s); retrying in %.1fs",
                channel,
                type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max)
            continue
        try:
            async with conn:
                async with asyncio.timeout(connect_timeout):
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                log.debug("listening on %s", channel)
                if on_connected is not None:
                    await on_connected()
                delay = retry_min
                while True:
                    async for notify in conn.notifies(timeout=check_interval):
                        on_notify(notify.payload)
                    async with asyncio.timeout(connect_timeout):
                        await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            # psycopg.Error also covers a failing catch-up query: retry it with the connection
            log.warning(
                "LISTEN %s: connection lost (%s); reconnecting in %.1fs",
                channel,
                type(exc).__name__,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry_max)
