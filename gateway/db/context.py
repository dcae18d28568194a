"""Entering an access context on a connection (the runtime half of :mod:`gateway.db.rls`).

An API request's transaction starts with :func:`enter_org`; the settings are transaction-local
(``set_config(…, true)``), so they vanish at commit or rollback and a pooled connection never
carries one caller's scope into the next request. A background worker's connection starts with
:func:`enter_system` once, recorded in ``system_contexts`` (purpose, role, backend, time).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.db.rls import AppRole

_ORG_SQL: Final = (
    "SELECT set_config('telehub.org', %s, true), set_config('telehub.role', %s, true), "
    "set_config('telehub.actor', %s, true)"
)
_SYSTEM_SQL: Final = "SELECT set_config('telehub.system', %s, false)"
_SYSTEM_AUDIT_SQL: Final = "INSERT INTO system_contexts (purpose) VALUES (%s)"


class Caller(Protocol):
    """Whoever an API request runs for (``gateway.api.auth.Principal``)."""

    @property
    def org_id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def actor(self) -> str: ...


def role_dsn(dsn: str, role: AppRole, override: str | None = None) -> str:
    """The DSN a service logs in with as ``role``: ``override`` when configured, else ``dsn``
    with the user replaced and any password dropped (trust, peer, certificates or a
    ``.pgpass`` entry then authenticate the role)."""
    if override:
        return override
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["user"] = str(role)
    params.pop("password", None)
    params.setdefault("application_name", str(role))
    return make_conninfo("", **params)


async def enter_org(conn: psycopg.AsyncConnection[Any], caller: Caller) -> None:
    """Start the transaction on ``conn`` in ``caller``'s organisation context."""
    await conn.execute(_ORG_SQL, (caller.org_id, caller.role, caller.actor))


async def enter_system(conn: psycopg.AsyncConnection[Any], purpose: str) -> None:
    """Give a worker's connection (autocommit) the system context ``purpose``, audited."""
    if not purpose:
        raise ValueError("a system context needs a purpose")
    await conn.execute(_SYSTEM_SQL, (purpose,))
    await conn.execute(_SYSTEM_AUDIT_SQL, (purpose,))
    if not conn.autocommit:
        await conn.commit()  # a session setting made in a rolled-back transaction is undone


def enter_system_sync(conn: psycopg.Connection[Any], purpose: str) -> None:
    """:func:`enter_system` for a synchronous connection."""
    if not purpose:
        raise ValueError("a system context needs a purpose")
    conn.execute(_SYSTEM_SQL, (purpose,))
    conn.execute(_SYSTEM_AUDIT_SQL, (purpose,))
    if not conn.autocommit:
        conn.commit()
