"""The HTTP API (FastAPI): ``create_app(settings_or_dsn)``. See :mod:`gateway.api.app`."""

from gateway.api.app import create_app
from gateway.api.auth import Principal, token_sha256
from gateway.api.errors import ApiError, ErrorResponse

__all__ = ["ApiError", "ErrorResponse", "Principal", "create_app", "token_sha256"]
