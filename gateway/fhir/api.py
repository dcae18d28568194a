"""The read-only FHIR R4 API at ``/fhir`` (``application/fhir+json``).

``GET /fhir/metadata`` (CapabilityStatement, no token needed), ``GET /fhir/Patient/<id>``,
``GET /fhir/Observation?patient=<id>[&code=<token>][&date=ge..&date=le..][&_count=n]``,
``GET /fhir/Device?patient=<id>``. Authentication and organisation scoping are the API's
(:func:`gateway.api.auth.authenticate`); all patient data is read through
:mod:`gateway.fhir.access`. Errors are ``OperationOutcome``; a patient outside the caller's
organisation is a 404 exactly like a patient that does not exist.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from gateway.api.audit import AuditEntry, Outcome, RequestId, write_audit
from gateway.api.auth import Principal, authenticate, bearer_scheme
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError
from gateway.api.routes_consent import access_log
from gateway.fhir import FhirError, access
from gateway.fhir import mapping as m
from gateway.fhir.audit import audit_event

FHIR_JSON: Final = "application/fhir+json"
FHIR_VERSION: Final = "4.0.1"
DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 500
_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")

log = logging.getLogger(__name__)

router = APIRouter(prefix="/fhir", include_in_schema=False)


class FhirApiError(FhirError):
    """Answered as an OperationOutcome with this HTTP status and issue code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def operation_outcome(code: str, message: str, severity: str = "error") -> m.Resource:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": message}],
    }


def fhir_response(
    resource: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(m.dumps(resource), status_code=status, media_type=FHIR_JSON, headers=headers)


def _not_found(what: str) -> FhirApiError:
    return FhirApiError(404, "not-found", f"{what} not found")


def _invalid(message: str) -> FhirApiError:
    return FhirApiError(400, "invalid", message)


async def fhir_principal(
    ctx: Ctx,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The API's bearer-token authentication, its errors as OperationOutcome."""
    try:
        return await authenticate(ctx, creds)
    except ApiError as exc:
        raise FhirApiError(exc.status, "login", exc.message, exc.headers) from None
    except psycopg.OperationalError as exc:
        raise _unavailable(exc) from None


def _unavailable(exc: Exception) -> FhirApiError:
    log.warning("FHIR API: database unavailable (%s)", type(exc).__name__)
    return FhirApiError(503, "transient", "the database is unavailable", {"Retry-After": "5"})


@asynccontextmanager
async def _connection(ctx: ApiContext, principal: Principal) -> AsyncIterator[access.Conn]:
    """A pooled connection; the database being unreachable or slow is a 503 OperationOutcome."""
    try:
        async with ctx.connect(principal) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise _unavailable(exc) from None


FhirPrincipal = Annotated[Principal, Depends(fhir_principal)]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _clean(value: str, name: str) -> str:
    if not value or len(value) > 200 or any(ord(ch) < 32 for ch in value):
        raise _invalid(f"invalid {name}")
    return value


def _patient_param(request: Request) -> str:
    values = request.query_params.getlist("patient")
    if len(values) != 1:
        raise _invalid("exactly one `patient` parameter is required")
    ref = _clean(values[0], "patient")
    fhir_id = ref.removeprefix("Patient/")
    pid = m.patient_id_of(fhir_id)
    if pid is None:
        raise _invalid("`patient` is not a Patient id")
    return pid


def _count(request: Request) -> int:
    raw = request.query_params.get("_count", str(DEFAULT_COUNT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise _invalid(f"`_count` must be an integer from 1 to {MAX_COUNT}")
    return int(raw)


def encode_cursor(key: access.ObservationKey) -> str:
    t, hub, device, grp, code = key
    raw = json.dumps([t.isoformat(), hub, device, grp, code], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> access.ObservationKey:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        t, hub, device, grp, code = json.loads(raw)
        when = datetime.fromisoformat(t)
        if when.tzinfo is None or not all(isinstance(x, str) for x in (hub, device, grp)):
            raise ValueError
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code < 2**31:
            raise ValueError
        if any("\x00" in x for x in (hub, device, grp)):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise _invalid("`_cursor` is not a cursor of this server") from None
    return (when, hub, device, grp, code)


def _cursor(request: Request) -> access.ObservationKey | None:
    raw = request.query_params.get("_cursor")
    if raw is None:
        return None
    if len(raw) > 2000:
        raise _invalid("`_cursor` is not a cursor of this server")
    return decode_cursor(raw)


_DATE_RE: Final = re.compile(r"(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2}(?:T.+)?)")


def parse_date(value: str) -> tuple[datetime | None, datetime | None]:
    """One ``date`` search value → [start, end) bounds. A date without time is that UTC day;
    a dateTime needs a UTC offset."""
    match = _DATE_RE.fullmatch(value)
    if match is None:
        raise _invalid("`date` must be [eq|ge|gt|le|lt]YYYY-MM-DD or a dateTime with offset")
    prefix, text = match.group(1) or "eq", match.group(2)
    try:
        if "T" in text:
            lo = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if lo.tzinfo is None:
                raise _invalid("a `date` dateTime needs a UTC offset")
            hi = lo + timedelta(microseconds=1)
        else:
            lo = datetime.combine(datetime.fromisoformat(text).date(), time(), UTC)
            hi = lo + timedelta(days=1)
    except ValueError:
        raise _invalid("`date` is not a valid date or dateTime") from None
    return {
        "eq": (lo, hi),
        "ge": (lo, None),
        "gt": (hi, None),
        "le": (None, hi),
        "lt": (None, lo),
    }[prefix]


def _date_range(request: Request) -> tuple[datetime | None, datetime | None]:
    start: datetime | None = None
    end: datetime | None = None
    for value in request.query_params.getlist("date"):
        lo, hi = parse_date(_clean(value, "date"))
        if lo is not None:
            start = lo if start is None else max(start, lo)
        if hi is not None:
            end = hi if end is None else min(end, hi)
    return start, end


def _codes(request: Request) -> tuple[frozenset[int], frozenset[str], bool]:
    """The ``code`` parameters (comma = OR): MDC codes, LOINC codes, and whether any was given."""
    mdcs: set[int] = set()
    loincs: set[str] = set()
    given = False
    for value in request.query_params.getlist("code"):
        for token in _clean(value, "code").split(","):
            given = True
            found = m.observation_codes(token)
            if found is not None:
                mdcs |= found[0]
                loincs |= found[1]
    return frozenset(mdcs), frozenset(loincs), given


_KNOWN_PARAMS: Final = {
    "Observation": {"patient", "subject", "code", "date", "_count", "_cursor", "_format"},
    "Device": {"patient", "_format"},
    "AuditEvent": {"patient", "_count", "_format"},
}


def _check_params(request: Request, resource: str) -> None:
    unknown = set(request.query_params) - _KNOWN_PARAMS[resource]
    if unknown:
        raise _invalid(f"unsupported search parameter(s): {', '.join(sorted(unknown))[:200]}")


def _bundle(
    request: Request, entries: list[tuple[m.Resource, str]], next_params: dict[str, Any] | None
) -> m.Resource:
    base = _base(request)
    links = [{"relation": "self", "url": str(request.url)}]
    if next_params is not None:
        path = request.url.path
        links.append(
            {
                "relation": "next",
                "url": f"{str(request.base_url).rstrip('/')}{path}?{urlencode(next_params, True)}",
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{res['resourceType']}/{res['id']}",
                "resource": res,
                "search": {"mode": mode},
            }
            for res, mode in entries
        ],
    }


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    return fhir_response(capability_statement(_base(request)))


def capability_statement(base: str) -> m.Resource:
    def search(name: str, kind: str) -> dict[str, str]:
        return {"name": name, "type": kind}

    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "kind": "instance",
        "software": {"name": "telehub"},
        "implementation": {"description": "telehub gateway FHIR API (read-only)", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "implementationGuide": ["http://hl7.org/fhir/uv/phd/ImplementationGuide/hl7.fhir.uv.phd"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ],
                            "text": "Bearer token of an organisation",
                        }
                    ]
                },
                "resource": [
                    {
                        "type": "Patient",
                        "profile": m.PROFILE_PATIENT,
                        "interaction": [{"code": "read"}],
                    },
                    {
                        "type": "Observation",
                        "supportedProfile": [m.PROFILE_NUMERIC, m.PROFILE_COMPOUND, m.PROFILE_BITS],
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            search("patient", "reference"),
                            search("code", "token"),
                            search("date", "date"),
                        ],
                    },
                    {
                        "type": "Device",
                        "supportedProfile": [m.PROFILE_DEVICE, m.PROFILE_GATEWAY],
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [search("patient", "reference")],
                    },
                ],
            }
        ],
    }


@router.get("/Patient/{fhir_id}")
async def read_patient(
    ctx: Ctx, principal: FhirPrincipal, rid: RequestId, fhir_id: str
) -> Response:
    pid = m.patient_id_of(fhir_id) if _ID_RE.fullmatch(fhir_id) else None
    if pid is None:
        raise _not_found("Patient")
    async with _connection(ctx, principal) as conn:
        await _visible(conn, principal, rid, pid, "fhir-patient")
        async with conn.transaction():
            row = await access.patient(conn, principal, pid)
            if row is None:
                raise _not_found("Patient")  # consent withdrawn in between
            await write_audit(conn, AuditEntry(rid, principal, pid, "fhir-patient",
                                               target=pid, row_count=1))  # fmt: skip
    return fhir_response(m.patient(row.patient_id, row.display_name))


async def _visible(
    conn: access.Conn, principal: Principal, rid: str, pid: str, resource: str
) -> access.PatientRow:
    """The patient, or a 404 OperationOutcome after a ``denied`` audit row (call it outside a
    transaction block: the refusal is committed before the 404)."""
    row = await access.patient(conn, principal, pid)
    if row is not None:
        return row
    cur = await conn.execute("SELECT 1 WHERE telehub_patient_exists(%s)", (pid,))
    exists = await cur.fetchone() is not None
    await write_audit(conn, AuditEntry(rid, principal, pid if exists else None, resource,
                                       target=pid, outcome=Outcome.DENIED))  # fmt: skip
    await conn.commit()
    raise _not_found("Patient")


@router.get("/Observation")
async def search_observations(
    ctx: Ctx, principal: FhirPrincipal, rid: RequestId, request: Request
) -> Response:
    _check_params(request, "Observation")
    if "subject" in request.query_params and "patient" not in request.query_params:
        raise _invalid("use `patient` (subject is not supported)")
    pid = _patient_param(request)
    mdcs, loincs, code_given = _codes(request)
    start, end = _date_range(request)
    count, after = _count(request), _cursor(request)
    empty = (code_given and not mdcs and not loincs) or (start and end and start >= end)
    q = access.ObservationQuery(
        patient_id=pid, mdcs=mdcs, loincs=loincs, start=start, end=end, after=after, limit=count
    )
    async with _connection(ctx, principal) as conn:
        await _visible(conn, principal, rid, pid, "fhir-observations")
        async with conn.transaction():
            rows, ids, more = (
                ([], [], False) if empty else await access.observation_rows(conn, principal, q)
            )
            await write_audit(conn, AuditEntry(rid, principal, pid, "fhir-observations",
                                               target=pid, range_from=start, range_to=end,
                                               row_count=len(rows)))  # fmt: skip
    entries = page_entries(rows, ids)
    next_params = None
    if more:
        next_params = {k: request.query_params.getlist(k) for k in request.query_params}
        next_params["_cursor"] = [encode_cursor(ids[-1])]
        next_params["_count"] = [str(count)]
    return fhir_response(_bundle(request, entries, next_params))


def page_entries(
    rows: list[m.StoredReading], ids: list[tuple[datetime, str, str, str, int]]
) -> list[tuple[m.Resource, str]]:
    """The page's Observations in page order (``match``), each record's status-bits
    Observations after it (``include``)."""
    by_record: dict[tuple[datetime, str, str, str], list[m.StoredReading]] = {}
    for r in rows:
        by_record.setdefault(r.record, []).append(r)
    mapped: dict[tuple[datetime, str, str, str, int], m.Resource] = {}
    bits: dict[tuple[datetime, str, str, str], list[m.Resource]] = {}
    for record, record_rows in by_record.items():
        for obs in m.record_observations(record_rows):
            if obs["meta"]["profile"] == [m.PROFILE_BITS]:
                bits.setdefault(record, []).append(obs)
            else:
                mapped[(*record, int(obs["code"]["coding"][0]["code"]))] = obs
    out: list[tuple[m.Resource, str]] = []
    seen: set[tuple[datetime, str, str, str]] = set()
    for ident in ids:
        found = mapped.get(ident)
        if found is None:
            continue
        out.append((found, "match"))
        record = (ident[0], ident[1], ident[2], ident[3])
        if record not in seen:
            seen.add(record)
            out += [(b, "include") for b in bits.get(record, [])]
    return out


@router.get("/Device")
async def search_devices(
    ctx: Ctx, principal: FhirPrincipal, rid: RequestId, request: Request
) -> Response:
    _check_params(request, "Device")
    pid = _patient_param(request)
    async with _connection(ctx, principal) as conn:
        await _visible(conn, principal, rid, pid, "fhir-devices")
        async with conn.transaction():
            rows = await access.devices(conn, principal, pid)
            await write_audit(conn, AuditEntry(rid, principal, pid, "fhir-devices", target=pid,
                                               row_count=len(rows)))  # fmt: skip
    entries: list[tuple[m.Resource, str]] = [
        (m.phd_device(d.hub_id, d.device_id, d.patient_id, d.model, d.mdcs), "match") for d in rows
    ]
    entries += [(m.gateway_device(h), "match") for h in sorted({d.hub_id for d in rows})]
    return fhir_response(_bundle(request, entries, None))


@router.get("/AuditEvent")
async def search_audit_events(
    ctx: Ctx, principal: FhirPrincipal, rid: RequestId, request: Request
) -> Response:
    """The patient's access log as AuditEvents, newest first (the citizen portal only)."""
    _check_params(request, "AuditEvent")
    if not principal.is_portal:
        raise FhirApiError(403, "forbidden", "the citizen portal's role is required here")
    pid = _patient_param(request)
    count = _count(request)
    async with _connection(ctx, principal) as conn:
        cur = await conn.execute("SELECT 1 FROM patients WHERE patient_id = %s", (pid,))
        if await cur.fetchone() is None:
            raise _not_found("Patient")
        rows = await access_log(conn, principal, rid, pid, limit=count)
    entries: list[tuple[m.Resource, str]] = [(audit_event(r), "match") for r in rows]
    return fhir_response(_bundle(request, entries, None))


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def unsupported(path: str) -> Response:
    raise FhirApiError(404, "not-supported", "unsupported FHIR interaction or resource")


def install(app: FastAPI) -> None:
    """Mount the FHIR API and its OperationOutcome error handler on the app."""

    async def on_fhir_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FhirApiError)
        return fhir_response(
            operation_outcome(exc.code, exc.message), status=exc.status, headers=exc.headers
        )

    app.add_exception_handler(FhirApiError, on_fhir_error)
    app.include_router(router)
