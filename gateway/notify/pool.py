"""The async connection pool shared by the API, the live stream and the webhook worker."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from gateway.db.context import enter_system

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


def make_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = 5.0,
    statement_timeout_ms: int = 15_000,
    name: str = "telehub-worker",
    scoped: bool = False,
) -> Pool:
    """A pool (not yet open: ``await pool.open()``) of connections.

    By default a worker pool: autocommit, each connection in the system context ``name``
    (:func:`gateway.db.context.enter_system`). ``scoped``: an API pool whose connections are
    not autocommit, so a checkout is one transaction (committed when the block ends, rolled
    back on an exception) that the caller starts with :func:`gateway.db.context.enter_org`.

    Every statement is bounded by ``statement_timeout`` on the server and every checkout by
    ``acquire_timeout`` (``PoolTimeout``, an ``OperationalError``) on the client.
    """

    async def configure(conn: psycopg.AsyncConnection[TupleRow]) -> None:
        await conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        if not scoped:
            await enter_system(conn, name)
        else:
            await conn.commit()  # configure must leave the connection idle

    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=acquire_timeout,
        kwargs={"autocommit": not scoped, "connect_timeout": max(1, round(acquire_timeout))},
        configure=configure,
        open=False,
        name=name,
        reconnect_timeout=60.0,
    )
