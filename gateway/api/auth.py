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

from gateway.api.audit import AuditEntry, Outcome, write_audit
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError, not_found
from gateway.api.oidc import OidcError, OidcVerifier, looks_like_jwt

#: ``portal``: a citizen portal (a machine client of the platform's own organisation) that shows
#: patients who looked at their data and records their consents; it reads no health data.
Role = Literal["clinician", "operator", "portal"]

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
    org_kind: str = "hospital"
    care_team: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def is_portal(self) -> bool:
        return self.role == "portal"

    @property
    def is_platform_operator(self) -> bool:
        """An operator of the platform's own organisation (kind ``operator``): also sees hubs
        that no organisation owns yet."""
        return self.is_operator and self.org_kind == "operator"

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
    if ctx.oidc is not None and looks_like_jwt(creds.credentials):
        return await _from_jwt(ctx, ctx.oidc, creds.credentials)
    async with ctx.connect(None) as conn:
        cur = await conn.execute(
            # a SECURITY DEFINER lookup: no organisation is known yet (gateway.db.rls)
            "SELECT org_id, clinician, role, kind, dead FROM telehub_token_principal(%s)",
            (token_sha256(creds.credentials),),
        )
        row = await cur.fetchone()
    if row is None:
        raise _unauthorized("unknown token", "invalid_token")
    org_id, clinician, role, kind, dead = row
    if dead:
        # the same answer as an unknown token: a revoked token reveals nothing
        raise _unauthorized("unknown token", "invalid_token")
    return Principal(
        org_id=org_id,
        clinician=clinician,
        role="operator" if role == "operator" else "portal" if role == "portal" else "clinician",
        org_kind=kind,
    )


async def _from_jwt(ctx: ApiContext, verifier: OidcVerifier, token: str) -> Principal:
    try:
        claims = await verifier.verify(token)
    except OidcError as exc:
        raise _unauthorized(str(exc), "invalid_token") from None
    async with ctx.connect(None) as conn:
        cur = await conn.execute(
            "SELECT org_id, kind FROM orgs WHERE org_id = %s OR sor_id = %s",
            (claims.org, claims.org),
        )
        row = await cur.fetchone()
    if row is None:
        raise _unauthorized("the token's organisation is not known here", "invalid_token")
    return Principal(
        org_id=row[0],
        clinician=claims.subject,
        role="operator" if claims.role == "operator" else "clinician",
        org_kind=row[1],
        care_team=claims.care_team,
    )


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise ApiError(403, "forbidden", "operator role required")
    return principal


OperatorPrincipal = Annotated[Principal, Depends(require_operator)]


async def ensure_patient_visible(
    ctx: Ctx, principal: Principal, patient_id: str, *, request_id: str, resource: str
) -> None:
    """404 unless the caller's organisation follows this patient; a refused lookup is audited
    (``denied``) first, whether or not the patient exists."""
    async with ctx.connect(principal) as conn:
        cur = await conn.execute(
            "SELECT 1 FROM patient_access WHERE patient_id = %s AND org_id = %s",
            (patient_id, principal.org_id),
        )
        if await cur.fetchone() is None:
            exists = await conn.execute("SELECT telehub_patient_exists(%s)", (patient_id,))
            known = await exists.fetchone()
            await write_audit(
                conn,
                AuditEntry(
                    request_id=request_id,
                    principal=principal,
                    patient_id=patient_id if known is not None and known[0] else None,
                    resource=resource,
                    target=patient_id,
                    outcome=Outcome.DENIED,
                ),
            )
            await conn.commit()  # the refusal's audit row outlives the 404's rollback
            raise not_found("patient")
