"""The audit trail of patient-data reads (``audit_events``, migration 21).

Every successful read of a patient's data writes one row **in the same transaction** as the read
(:func:`audited_read`): if the audit insert fails, the read fails. A lookup of a patient the
caller may not see writes a ``denied`` row (its own transaction) before the 404. Rows carry who
(actor, organisation, role), whom (patient), what (resource, time range, row count), why
(purpose) and the request id (``X-Request-ID`` if the client sent a sane one, else generated).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final

import psycopg
from fastapi import Depends, Request

if TYPE_CHECKING:
    from gateway.api.auth import Principal

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


class Purpose(StrEnum):
    """The legal basis of a lookup (sundhedsloven §42 a: current treatment)."""

    TREATMENT = "treatment"
    #: the patient's own insight (the citizen portal: access log, consents)
    CITIZEN = "citizen-insight"
    #: recording or reading a patient's consents on their behalf
    CONSENT = "consent-administration"


def request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is not None and _REQUEST_ID.match(given):
        return given
    return str(uuid.uuid4())


RequestId = Annotated[str, Depends(request_id)]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    request_id: str
    principal: Principal
    patient_id: str | None
    resource: str  # e.g. "readings", "alerts", "alert-ack"
    target: str | None = None  # the id asked for (a patient or alert id)
    outcome: Outcome = Outcome.ALLOWED
    range_from: datetime | None = None
    range_to: datetime | None = None
    row_count: int | None = None
    purpose: Purpose = Purpose.TREATMENT

    def params(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "actor": self.principal.actor,
            "org_id": self.principal.org_id,
            "role": self.principal.role,
            "patient_id": self.patient_id,
            "resource": self.resource,
            "target": self.target,
            "outcome": self.outcome.value,
            "range_from": self.range_from,
            "range_to": self.range_to,
            "row_count": self.row_count,
            "purpose": self.purpose.value,
        }


INSERT_SQL: Final = """INSERT INTO audit_events (request_id, actor, org_id, role, patient_id,
        resource, target, outcome, range_from, range_to, row_count, purpose)
    VALUES (%(request_id)s, %(actor)s, %(org_id)s, %(role)s, %(patient_id)s, %(resource)s,
        %(target)s,
        %(outcome)s, %(range_from)s, %(range_to)s, %(row_count)s, %(purpose)s)"""


async def write_audit(conn: psycopg.AsyncConnection[Any], entry: AuditEntry) -> None:
    """Insert one audit row on ``conn`` (inside the caller's transaction when it has one)."""
    await conn.execute(INSERT_SQL, entry.params())


async def write_audits(conn: psycopg.AsyncConnection[Any], entries: list[AuditEntry]) -> None:
    if entries:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_SQL, [e.params() for e in entries])
