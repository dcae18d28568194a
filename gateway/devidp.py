"""A small OIDC identity provider for tests and the demo: discovery + JWKS over HTTP, and
token issuing with a key generated at start. Not for production (it signs whatever it is told).

    idp = DevIdP(issuer="http://127.0.0.1:9000")
    app = idp.asgi()              # serve with uvicorn at the issuer URL
    token = idp.issue(sub="dr-1", aud="telehub", org="rh", role="clinician")
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(slots=True)
class DevIdP:
    issuer: str
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    current: str = ""
    jwks_requests: int = 0

    def __post_init__(self) -> None:
        if not self.keys:
            self.rotate()

    def rotate(self) -> str:
        """A new signing key (the old ones stay published); returns its kid."""
        kid = uuid.uuid4().hex[:16]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def issue(
        self,
        *,
        sub: str,
        aud: str,
        lifetime: float = 300.0,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "sub": sub, "aud": aud, "iat": now,
                   "exp": now + int(lifetime), **claims}  # fmt: skip
        k = kid or self.current
        return jwt.encode(
            payload, self.keys[k], algorithm="RS256", headers={"kid": k, **(headers or {})}
        )

    def asgi(self) -> Starlette:
        async def discovery(_request: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "jwks_uri": self.issuer.rstrip("/") + "/jwks.json",
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )

        async def jwks(_request: Request) -> JSONResponse:
            self.jwks_requests += 1
            return JSONResponse(self.jwks())

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks.json", jwks),
            ]
        )
