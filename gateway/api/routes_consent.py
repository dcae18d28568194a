"""Consent and the patient's own view of who looked (migration 94, docs/security.md).

* ``GET/POST /api/v1/patients/{id}/consents``, ``POST …/consents/{cid}/withdraw`` — the
  patient's refusals (§42 a) and sharing consents. Recorded by the citizen portal (role
  ``portal``) or by a clinician of an organisation with a care relation to the patient (the
  patient told them), whether or not that relation gives access at the moment: a refused
  organisation can still record and see the refusal, and nothing else. Effective at the next
  statement of every reader (``patient_access`` is a view over relations and consents).
* ``GET /api/v1/patients/{id}/access-log`` — every lookup of the patient's data (``audit_events``:
  when, which organisation, who, what, why, allowed or refused), for the citizen portal only
  ("Min Log"). FHIR AuditEvent: ``GET /fhir/AuditEvent?patient=`` (gateway/fhir/api.py).

Each of these reads or writes one audit row in its transaction (resource ``consents`` or
``access-log``); operators get 403, an unknown or unrelated patient 404 (audited ``denied``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import psycopg
from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.api.audit import AuditEntry, Outcome, Purpose, RequestId, write_audit
from gateway.api.auth import CurrentPrincipal, Principal
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, error_responses, not_found
from gateway.api.hygiene import SAFE_TEXT

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", responses=error_responses(400, 401, 403, 413, 414, 503))

PatientId = Annotated[str, Path(min_length=1, max_length=200, pattern=SAFE_TEXT)]
ConsentId = Annotated[int, Path(ge=1, le=2**62)]
_NO_NUL: Final = r"^[^\x00]*$"
_Text = Annotated[str, Field(max_length=2000, pattern=_NO_NUL)]
MAX_LOG: Final = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsentIn(_In):
    kind: Literal["refusal", "sharing"] = Field(
        description="`refusal`: no lookups (sundhedsloven §42 a); `sharing`: consent to share "
        "(§41) with an organisation whose care relation rests on consent."
    )
    org: Annotated[str, Field(min_length=1, max_length=200, pattern=SAFE_TEXT)] | None = Field(
        default=None, description="One organisation (or give `sector`, or neither: everybody)."
    )
    sector: Literal["hospital", "gp", "municipality"] | None = None
    purpose: Literal["treatment"] = "treatment"
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")
    valid_to: AwareDatetime | None = Field(default=None, description="Default: until withdrawn.")
    note: _Text | None = None

    def problem(self, now: datetime) -> str | None:
        """What is wrong across fields (checked after the patient: an unknown one is 404)."""
        if self.org is not None and self.sector is not None:
            return "give `org` or `sector`, not both"
        if self.valid_to is not None and self.valid_to <= (self.valid_from or now):
            return "`valid_to` must be after `valid_from` (and in the future)"
        return None


class WithdrawIn(_In):
    note: _Text | None = None


class ConsentOut(BaseModel):
    consent_id: int
    patient_id: str
    kind: str
    org: str | None
    sector: str | None
    purpose: str
    valid_from: datetime
    valid_to: datetime | None
    recorded_at: datetime
    recorded_by: str
    recorded_org: str
    note: str | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    in_force: bool


class ConsentList(BaseModel):
    consents: list[ConsentOut]


class Lookup(BaseModel):
    at: datetime
    org: str
    org_name: str | None
    org_kind: str | None
    org_sor: str | None = None
    actor: str
    role: str
    resource: str
    outcome: Literal["allowed", "denied"]
    purpose: str
    range_from: datetime | None
    range_to: datetime | None
    row_count: int | None


class AccessLog(BaseModel):
    patient_id: str
    lookups: list[Lookup]


_CONSENT_COLUMNS: Final = """consent_id, patient_id, kind, org_id AS org, sector, purpose,
    valid_from, valid_to, recorded_at, recorded_by, recorded_org, note, withdrawn_at, withdrawn_by,
    (withdrawn_at IS NULL AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now()))
        AS in_force"""


async def _related(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    patient_id: str,
    rid: str,
    resource: str,
    *,
    portal_only: bool = False,
) -> None:
    """404 (audited ``denied``) unless the caller may administer this patient's consent: the
    portal for any patient that exists, a clinician whose organisation has a care relation."""
    if principal.is_operator or (portal_only and not principal.is_portal):
        raise ApiError(403, "forbidden", "the citizen portal's role is required here")
    if principal.is_portal:
        sql, params = "SELECT 1 WHERE telehub_patient_exists(%s)", (patient_id,)
    else:
        sql = "SELECT 1 FROM care_relations WHERE patient_id = %s AND org_id = %s"
        params = (patient_id, principal.org_id)  # type: ignore[assignment]
    cur = await conn.execute(sql, params)
    if await cur.fetchone() is not None:
        return
    exists = await conn.execute("SELECT 1 WHERE telehub_patient_exists(%s)", (patient_id,))
    await write_audit(
        conn,
        AuditEntry(rid, principal, patient_id if await exists.fetchone() else None, resource,
                   target=patient_id, outcome=Outcome.DENIED, purpose=_purpose(principal)),
    )  # fmt: skip
    await conn.commit()  # the refusal's audit row outlives the 404's rollback
    raise not_found("patient")


def _purpose(principal: Principal) -> Purpose:
    return Purpose.CITIZEN if principal.is_portal else Purpose.CONSENT


@router.get(
    "/patients/{patient_id}/consents",
    summary="The patient's refusals and sharing consents (withdrawn ones included)",
    responses=error_responses(404),
)
async def list_consents(
    ctx: Ctx, principal: CurrentPrincipal, rid: RequestId, patient_id: PatientId
) -> ConsentList:
    async with ctx.connect(principal) as conn:
        await _related(conn, principal, patient_id, rid, "consents")
    async with ctx.connect(principal) as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE patient_id = %s "
                "ORDER BY consent_id",
                (patient_id,),
            )
            rows = await cur.fetchall()
        await write_audit(conn, AuditEntry(rid, principal, patient_id, "consents",
                                           target=patient_id, row_count=len(rows),
                                           purpose=_purpose(principal)))  # fmt: skip
    return ConsentList(consents=[ConsentOut.model_validate(r) for r in rows])


@router.post(
    "/patients/{patient_id}/consents",
    summary="Record a refusal or a sharing consent (effective at once)",
    status_code=201,
    responses=error_responses(404, 422),
)
async def record_consent(
    ctx: Ctx, principal: CurrentPrincipal, rid: RequestId, patient_id: PatientId, body: ConsentIn
) -> ConsentOut:
    async with ctx.connect(principal) as conn:
        await _related(conn, principal, patient_id, rid, "consents")
    problem = body.problem(datetime.now(UTC))
    if problem is not None:
        raise ApiError(422, "invalid_request", problem)
    async with ctx.connect(principal) as conn, conn.transaction():
        if body.org is not None:
            cur = await conn.execute("SELECT 1 FROM orgs WHERE org_id = %s", (body.org,))
            if await cur.fetchone() is None:
                raise ApiError(422, "invalid_request", f"unknown organisation {body.org!r}")
        async with conn.cursor(row_factory=dict_row) as dc:
            await dc.execute(
                f"""INSERT INTO consents (patient_id, kind, org_id, sector, purpose, valid_from,
                       valid_to, recorded_by, recorded_org, note)
                    VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s, %s, %s)
                    RETURNING {_CONSENT_COLUMNS}""",
                (patient_id, body.kind, body.org, body.sector, body.purpose, body.valid_from,
                 body.valid_to, principal.actor, principal.org_id, body.note),
            )  # fmt: skip
            row = await dc.fetchone()
        assert row is not None
        await write_audit(conn, AuditEntry(rid, principal, patient_id, "consent-record",
                                           target=str(row["consent_id"]),
                                           purpose=_purpose(principal)))  # fmt: skip
    log.info("consent %d (%s) recorded by org %s", row["consent_id"], body.kind, principal.org_id)
    return ConsentOut.model_validate(row)


@router.post(
    "/patients/{patient_id}/consents/{consent_id}/withdraw",
    summary="Withdraw a refusal or consent (kept, marked withdrawn; effective at once)",
    responses=error_responses(404, 409, 422),
)
async def withdraw_consent(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    patient_id: PatientId,
    consent_id: ConsentId,
    body: WithdrawIn,
) -> ConsentOut:
    async with ctx.connect(principal) as conn:
        await _related(conn, principal, patient_id, rid, "consents")
    async with ctx.connect(principal) as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT withdrawn_at FROM consents WHERE consent_id = %s AND patient_id = %s "
                "FOR UPDATE",
                (consent_id, patient_id),
            )
            found = await cur.fetchone()
            if found is None:
                raise not_found("consent")
            if found["withdrawn_at"] is not None:
                raise ApiError(409, "conflict", f"consent {consent_id} is withdrawn already")
            note = body.note
            await cur.execute(
                f"""UPDATE consents SET withdrawn_at = now(), withdrawn_by = %s,
                       note = CASE WHEN %s::text IS NULL THEN note
                                   ELSE concat_ws(E'\\n', note, %s::text) END
                    WHERE consent_id = %s RETURNING {_CONSENT_COLUMNS}""",
                (principal.actor, note, note, consent_id),
            )
            row = await cur.fetchone()
        assert row is not None
        await write_audit(conn, AuditEntry(rid, principal, patient_id, "consent-withdraw",
                                           target=str(consent_id),
                                           purpose=_purpose(principal)))  # fmt: skip
    log.info("consent %d withdrawn by org %s", consent_id, principal.org_id)
    return ConsentOut.model_validate(row)


ACCESS_LOG_SQL: Final = """
SELECT e.at, e.org_id AS org, o.name AS org_name, o.kind AS org_kind, o.sor_id AS org_sor,
       e.patient_id, e.actor, e.role,
       e.resource, e.outcome, e.purpose, e.range_from, e.range_to, e.row_count, e.id
FROM telehub_access_log(%(patient)s, %(since)s, %(until)s, %(limit)s) e
LEFT JOIN orgs o USING (org_id)
ORDER BY e.at DESC, e.id DESC"""


async def access_log(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    rid: str,
    patient_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = MAX_LOG,
) -> list[dict[str, Any]]:
    """The lookups of ``patient_id`` (newest first), read and audited in one transaction (the
    caller checked the role and the patient)."""
    params = {
        "patient": patient_id,
        "since": since or datetime(1970, 1, 1, tzinfo=UTC),
        "until": until or datetime.now(UTC),
        "limit": limit,
    }
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(ACCESS_LOG_SQL, params)
            rows = await cur.fetchall()
        entry = AuditEntry(rid, principal, patient_id, "access-log", target=patient_id,
                           range_from=since, range_to=until, row_count=len(rows),
                           purpose=Purpose.CITIZEN)  # fmt: skip
        await write_audit(conn, entry)
    return rows


@router.get(
    "/patients/{patient_id}/access-log",
    summary="Who looked at the patient's data, when and why (the citizen portal only)",
    responses=error_responses(404, 422),
)
async def get_access_log(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    patient_id: PatientId,
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG)] = MAX_LOG,
) -> AccessLog:
    async with ctx.connect(principal) as conn:
        await _related(conn, principal, patient_id, rid, "access-log", portal_only=True)
        if since is not None and until is not None and since >= until:
            raise ApiError(422, "invalid_request", "`since` must be before `until`")
        rows = await access_log(
            conn, principal, rid, patient_id, since=since, until=until, limit=limit
        )
    return AccessLog(patient_id=patient_id, lookups=[Lookup.model_validate(r) for r in rows])
