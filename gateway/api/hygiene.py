"""Input hygiene at the ASGI boundary, before routing.

* A path or query string that is not storable text — a NUL character (PostgreSQL ``text`` cannot
  hold one), invalid UTF-8 after percent-decoding, or a C0 control character other than TAB —
  answers 400 ``invalid_request``; it never reaches a handler or the database (it used to be a
  500 with a traceback).
* A request body larger than ``max_body_bytes`` answers 413 ``payload_too_large`` (by
  ``Content-Length`` up front; a chunked body is read, bounded, before the handler runs).
* A URL longer than ``max_url_bytes`` answers 414 ``uri_too_long``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The pattern of every text path/query parameter in the OpenAPI schema: what the middleware lets
#: through (a client generating requests from the schema never sends what is answered with 400).
SAFE_TEXT: Final = r"^[^\x00-\x08\x0A-\x1F\x7F]+$"

#: Control characters that no identifier or timestamp of ours contains (TAB is allowed in text).
_UNSTORABLE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def unstorable_reason(raw: bytes) -> str | None:
    """Why percent-encoded ``raw`` (a path or query string) is not storable text, or None."""
    decoded = unquote_to_bytes(raw)
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    if "\x00" in text:
        return "contains a NUL character"
    if _UNSTORABLE.search(text):
        return "contains a control character"
    return None


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()


class InputHygiene:
    """Pure ASGI middleware (responses are not buffered, so the SSE stream is unaffected)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_url_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or str(scope["path"]).encode(
            "utf-8", "surrogateescape"
        )
        query: bytes = scope.get("query_string", b"")
        if len(raw_path) + len(query) > self.max_url_bytes:
            await _reply(send, 414, "uri_too_long", "the URL is too long", scope=scope)
            return
        # the decoded path as the router sees it, too (a server may hand over a decoded path)
        path_reason = unstorable_reason(raw_path) or unstorable_reason(
            str(scope["path"]).encode("utf-8", "surrogateescape")
        )
        if path_reason is not None:
            await _reply(send, 400, "invalid_request", f"the path {path_reason}", scope=scope)
            return
        query_reason = unstorable_reason(query.replace(b"+", b" "))
        if query_reason is not None:
            await _reply(
                send, 400, "invalid_request", f"the query string {query_reason}", scope=scope
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _reply(
                send, 413, "payload_too_large", "the request body is too large", scope=scope
            )
            return
        if declared is None and _has_body(scope):
            # a chunked body: read it (bounded) before the handler runs, then replay it
            chunks: list[bytes] = []
            seen = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_body_bytes:
                    await _reply(
                        send, 413, "payload_too_large", "the request body is too large", scope=scope
                    )
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    return any(name == b"transfer-encoding" for name, _ in headers)


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


#: FHIR issue types (http://hl7.org/fhir/issue-type) for the statuses this middleware answers.
_FHIR_ISSUE: Final = {400: "invalid", 413: "too-long", 414: "too-long"}


def _fhir_body(status: int, message: str) -> bytes:
    issue = {
        "severity": "error",
        "code": _FHIR_ISSUE.get(status, "invalid"),
        "diagnostics": message,
    }
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


async def _reply(
    send: Send, status: int, code: str, message: str, *, scope: Scope | None = None
) -> None:
    """The API's error model, or an OperationOutcome under /fhir (the FHIR API's own shape)."""
    path = str(scope.get("path", "")) if scope is not None else ""
    if path == "/fhir" or path.startswith("/fhir/"):
        body, media = _fhir_body(status, message), b"application/fhir+json"
    else:
        body, media = _error_body(code, message), b"application/json"
    headers: list[Any] = [
        (b"content-type", media),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
