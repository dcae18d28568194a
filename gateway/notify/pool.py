"""The async connection pool shared by the API, the live stream and the webhook worker."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


def make_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = 5.0,
    statement_timeout_ms: int = 15_000,
    name: str = "telehub-api",
) -> Pool:
    """A pool (not yet open: ``await pool.open()``) of autocommit connections.

    Every statement is bounded by ``statement_timeout`` on the server and every checkout by
    ``acquire_timeout`` (``PoolTimeout``, an ``OperationalError``) on the client.
    """

    async def configure(conn: psycopg.AsyncConnection[TupleRow]) -> None:
        await conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")

    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=acquire_timeout,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(acquire_timeout))},
        configure=configure,
        open=False,
        name=name,
        reconnect_timeout=60.0,
    )
