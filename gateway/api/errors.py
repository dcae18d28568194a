"""The API's one error shape, and the exception handlers that produce it.

Every error response (4xx and 5xx) has the body::

    {"error": {"code": "not_found", "message": "patient not found", "details": null}}

``code`` is stable and machine-readable; ``message`` is for people; ``details`` is a list of
``{"loc": [...], "msg": "..."}`` for ``invalid_request`` and null otherwise.

=====================  ======  ==========================================================
code                   status  meaning
=====================  ======  ==========================================================
unauthorized           401     no bearer token, or an unknown one (``WWW-Authenticate``)
forbidden              403     the token's role may not use this endpoint
not_found              404     no such resource *for this organisation* (existence of
                               other organisations' patients and alerts is not revealed)
method_not_allowed     405
invalid_request        400     a path/query parameter is not storable text (NUL, control char,
                               invalid UTF-8) — answered before routing
payload_too_large      413     request body over the limit
uri_too_long           414     path + query over the limit
invalid_request        422     bad query/path parameters or body
database_unavailable   503     PostgreSQL is unreachable or too slow (retry later)
internal_error         500
=====================  ======  ==========================================================
"""

from __future__ import annotations

import logging
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['query', 'limit'].")
    msg: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorInfo


class ApiError(Exception):
    """Raise to answer with the error model."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    422: "invalid_request",
    503: "database_unavailable",
}

_DESCRIPTIONS: Final = {
    400: "A path or query parameter is not storable text (NUL, control character, bad UTF-8)",
    413: "The request body is too large",
    414: "The URL is too long",
    401: "Missing or unknown bearer token",
    403: "The token's role may not use this endpoint",
    404: "Not found (or not visible to the caller's organisation)",
    409: "Conflict with the resource's state (e.g. the alert is resolved)",
    422: "Invalid parameters",
    503: "Database unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error model for these statuses."""
    return {
        s: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses
    }


def error_json(
    status: int,
    code: str,
    message: str,
    *,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_json(exc.status, exc.code, exc.message, headers=exc.headers)

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_json(exc.status_code, code, str(exc.detail), headers=headers)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            ErrorDetail(
                loc=[p for p in e.get("loc", ()) if isinstance(p, str | int)],
                msg=str(e.get("msg", "")),
            )
            for e in exc.errors()
        ]
        return error_json(422, "invalid_request", "invalid request parameters", details=details)

    async def on_db_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # PoolTimeout is an OperationalError too: no connection within the acquire timeout
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_json(
            503, "database_unavailable", "the database is unavailable", headers={"Retry-After": "5"}
        )

    async def on_internal(_request: Request, exc: Exception) -> JSONResponse:
        # the API boundary: the traceback is logged (no request data), the client gets the model
        log.error("unhandled %s in a request", type(exc).__name__, exc_info=exc)
        return error_json(500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(psycopg.OperationalError, on_db_unavailable)
    app.add_exception_handler(Exception, on_internal)
