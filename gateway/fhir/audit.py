"""``audit_events`` rows as FHIR R4 AuditEvent resources (the patient's "who looked" log).

One lookup is one AuditEvent: ``type`` rest, ``subtype`` the RESTful interaction, ``action``
R (read) / C (a consent recorded) / U (one withdrawn), ``recorded`` the time, ``outcome`` 0
(allowed) or 4 (refused), ``purposeOfEvent`` from v3-ActReason (TREAT for treatment, PATRQT for
the patient's own request), the person and their organisation as agents (the organisation
identified by its id, and its SOR id where it has one), telehub as the source, and the patient
(and the time range asked for) as the entity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from gateway.fhir.mapping import Resource, identifier, patient_fhir_id, text

_TYPE: Final = {
    "system": "http://dicom.nema.org/resources/ontology/DCM",
    "code": "110112",
    "display": "Query",
}
_REST: Final = "http://hl7.org/fhir/restful-interaction"
_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ORG_SYSTEM: Final = "urn:telehub:org"
SOR_SYSTEM: Final = "urn:oid:1.2.208.176.1.1"  # the Danish SOR (health organisation register)
ACTOR_SYSTEM: Final = "urn:telehub:actor"
_ACTIONS: Final = {"consent-record": "C", "consent-withdraw": "U"}
_PURPOSES: Final = {
    "treatment": ("TREAT", "treatment"),
    "citizen-insight": ("PATRQT", "patient requested"),
    "consent-administration": ("PATRQT", "patient requested"),
}


def _instant(t: datetime) -> str:
    return t.isoformat()


def audit_event(row: dict[str, Any]) -> Resource:
    """The AuditEvent of one ``audit_events`` row (with ``org_name`` and ``org_sor`` joined)."""
    allowed = row["outcome"] == "allowed"
    code, display = _PURPOSES.get(row["purpose"], ("TREAT", "treatment"))
    org: Resource = {"identifier": identifier(ORG_SYSTEM, row["org"])}
    if row.get("org_name"):
        org["display"] = text(row["org_name"])
    agents: list[Resource] = [
        {
            "type": {"text": text(row["role"])},
            "who": {"identifier": identifier(ACTOR_SYSTEM, row["actor"]),
                    "display": text(row["actor"])},
            "requestor": True,
        },
        {"who": org, "requestor": False},
    ]  # fmt: skip
    if row.get("org_sor"):
        agents.append(
            {"who": {"identifier": identifier(SOR_SYSTEM, row["org_sor"])}, "requestor": False}
        )
    entity: Resource = {
        "what": {"reference": f"Patient/{patient_fhir_id(row['patient_id'])}"},
        "description": text(row["resource"]),
    }
    details = [
        {"type": label, "valueString": _instant(row[k])}
        for label, k in (("from", "range_from"), ("to", "range_to"))
        if row.get(k) is not None
    ]
    if row.get("row_count") is not None:
        details.append({"type": "rows", "valueString": str(row["row_count"])})
    if details:
        entity["detail"] = details
    out: Resource = {
        "resourceType": "AuditEvent",
        "id": f"audit-{row['id']}",
        "type": _TYPE,
        "subtype": [{"system": _REST, "code": "search-type"}],
        "action": _ACTIONS.get(row["resource"], "R"),
        "recorded": _instant(row["at"]),
        "outcome": "0" if allowed else "4",
        "purposeOfEvent": [{"coding": [{"system": _ACT_REASON, "code": code,
                                        "display": display}]}],
        "agent": agents,
        "source": {
            "site": "telehub",
            "observer": {"display": "telehub gateway"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                      "code": "4", "display": "Application Server"}],
        },
        "entity": [entity],
    }  # fmt: skip
    if not allowed:
        out["outcomeDesc"] = "refused: no care relation or consent gives access"
    return out
