"""OIDC bearer JWTs for clinicians, validated against the issuer's JWKS (PyJWT).

* The algorithms are a fixed allow-list from configuration (default ``RS256``, ``ES256``), never
  taken from the token's header (RFC 8725 §2.1); HS* is never accepted.
* ``iss``, ``aud``, ``exp`` and ``iat`` are required and checked; a small leeway covers clock skew.
* The issuer's discovery document (``/.well-known/openid-configuration``) names the JWKS; keys
  are cached by ``kid``. An unknown ``kid`` refetches the JWKS, at most once per
  ``refetch_interval`` seconds (a flood of forged kids cannot make us hammer the IdP).
* Claims map to the principal: organisation (``org_claim``, an org id or the organisation's SOR
  id), care team (``care_team_claim``), role (``role_claim``: ``clinician`` or ``operator``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS: Final = ("RS256", "ES256")
_FORBIDDEN_ALGORITHMS: Final = frozenset({"none", "HS256", "HS384", "HS512"})


class OidcError(Exception):
    """A bearer JWT that is not acceptable (the message is safe to return: no token content)."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    org_claim: str = "org"
    care_team_claim: str = "care_team"
    role_claim: str = "role"
    leeway: float = 30.0
    refetch_interval: float = 30.0
    http_timeout: float = 5.0

    def __post_init__(self) -> None:
        bad = set(self.algorithms) & _FORBIDDEN_ALGORITHMS
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be asymmetric and non-empty, not {sorted(bad)}")


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    org: str
    care_team: str | None
    role: str


@dataclass(slots=True)
class OidcVerifier:
    config: OidcConfig
    _keys: dict[str, Any] = field(default_factory=dict)
    _jwks_uri: str | None = None
    _last_fetch: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=self.config.http_timeout) as http:
            if self._jwks_uri is None:
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                meta = (await http.get(url)).raise_for_status().json()
                if meta.get("issuer") != self.config.issuer:
                    raise OidcError("the issuer's discovery document names another issuer")
                self._jwks_uri = str(meta["jwks_uri"])
            jwks = (await http.get(self._jwks_uri)).raise_for_status().json()
        keys: dict[str, Any] = {}
        for k in jwt.PyJWKSet.from_dict(jwks).keys:
            if k.key_id is not None:
                keys[k.key_id] = k
        self._keys = keys

    async def _key(self, kid: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and (
                time.monotonic() - self._last_fetch >= self.config.refetch_interval
            ):
                self._last_fetch = time.monotonic()
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
                    log.warning("JWKS fetch failed: %s", type(exc).__name__)
                    raise OidcError("the identity provider's keys are unavailable") from None
        if kid not in self._keys:
            raise OidcError("the token is signed with an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("the token is not a JWT") from None
        if header.get("alg") not in self.config.algorithms:
            raise OidcError("the token's algorithm is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OidcError("the token names no key")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"the token is not valid ({type(exc).__name__})") from None
        org = claims.get(self.config.org_claim)
        role = claims.get(self.config.role_claim, "clinician")
        team = claims.get(self.config.care_team_claim)
        if not isinstance(org, str) or not org:
            raise OidcError(f"the token has no {self.config.org_claim!r} claim")
        if role not in ("clinician", "operator"):
            raise OidcError("the token's role is not one of clinician, operator")
        if team is not None and not isinstance(team, str):
            raise OidcError("the token's care team is not a string")
        return Claims(subject=str(claims["sub"]), org=org, care_team=team, role=role)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
