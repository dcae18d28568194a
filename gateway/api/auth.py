"""Bearer-token authentication and per-organisation authorisation.

A token is an opaque secret; only its SHA-256 is stored (``api_tokens.token_sha256``), so a leaked
database does not leak usable tokens. The token maps to (organisation, clinician, role).
A clinician sees only the patients that their organisation follows (``patient_access``); anything
else answers 404 as if it did not exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.context import Ctx
from gateway.api.errors import ApiError, not_found

Role = Literal["clinician", "operator"]

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token of an organisation: `Authorization: Bearer <token>`.",
)


def token_sha256(token: str) -> bytes:
    """The ``api_tokens.token_sha256`` of a token: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: str
    clinician: str | None
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def actor(self) -> str:
        """Who did it, for audit columns (the clinician, else the organisation)."""
        return self.clinician or f"org:{self.org_id}"


def _unauthorized(message: str, error: str | None) -> ApiError:
    challenge = 'Bearer realm="telehub"'
    if error:
        challenge += f', error="{error}"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


async def authenticate(
    ctx: Ctx,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise _unauthorized("a bearer token is required", None)
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT org_id, clinician, role FROM api_tokens WHERE token_sha256 = %s",
            (token_sha256(creds.credentials),),
        )
        row = await cur.fetchone()
    if row is None:
        raise _unauthorized("unknown token", "invalid_token")
    org_id, clinician, role = row
    return Principal(
        org_id=org_id, clinician=clinician, role="operator" if role == "operator" else "clinician"
    )


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise ApiError(403, "forbidden", "operator role required")
    return principal


OperatorPrincipal = Annotated[Principal, Depends(require_operator)]


async def ensure_patient_visible(ctx: Ctx, principal: Principal, patient_id: str) -> None:
    """404 unless the caller's organisation follows this patient."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM patient_access WHERE patient_id = %s AND org_id = %s",
            (patient_id, principal.org_id),
        )
        if await cur.fetchone() is None:
            raise not_found("patient")
