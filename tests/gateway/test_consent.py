"""Care relations and consent (migration 94) through the real API and PostgreSQL: a §42 a refusal
hides the patient from the refused organisation at its next request — API, FHIR, worklist —
and from nobody else; a municipality whose relation rests on consent sees the patient only
while a sharing consent is in force; the citizen portal reads who looked (JSON and FHIR
AuditEvent) and records consents; bad inputs and the wrong roles are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from gateway.api import create_app
from gateway.fleet import CareRelation, Fleet, Org, Token
from tests.gateway.api_support import FLEET, api_client, auth, insert_reading, seed

pytestmark = pytest.mark.integration

PORTAL = {"Authorization": "Bearer tok-portal-sundhed-0123456789"}
KOM = {"Authorization": "Bearer tok-kom-homecare-0123456789"}
T = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
READINGS = "/api/v1/patients/p-001/readings?from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z"
FHIR_OBS = "/fhir/Observation?patient=p-001"


def _fleet() -> Fleet:
    patients = [
        p.model_copy(update={"relations": [CareRelation(org="kom", relation="home-care",
                                                        legal_basis="consent",
                                                        care_team="hjemmepleje-nord")]})
        if p.id == "p-001" else p
        for p in FLEET.patients
    ]  # fmt: skip
    return FLEET.model_copy(
        update={
            "orgs": [*FLEET.orgs, Org(id="kom", name="Odense Kommune", kind="municipality")],
            "tokens": [
                *FLEET.tokens,
                Token(token=PORTAL["Authorization"][7:], org="ops", clinician="sundhed.dk",
                      role="portal"),
                Token(token=KOM["Authorization"][7:], org="kom", clinician="SOSU Jensen"),
            ],
            "patients": patients,
        }
    )  # fmt: skip


@pytest.fixture
async def client(fresh_db: str) -> AsyncIterator[httpx.AsyncClient]:
    seed(fresh_db, _fleet())
    with psycopg.connect(fresh_db) as conn:
        insert_reading(conn, time=T, key="k1")
    async with api_client(create_app(fresh_db)) as c:
        yield c


def _q(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode(), params).fetchall()


async def _sees(c: httpx.AsyncClient, who: dict[str, str]) -> tuple[bool, int, int, int]:
    """(p-001 in its patient list, readings status, FHIR Observation status, FHIR Patient)."""
    listed = [p["patient_id"] for p in (await c.get("/api/v1/patients", headers=who)).json()[
        "patients"]]  # fmt: skip
    r = await c.get(READINGS, headers=who)
    f = await c.get(FHIR_OBS, headers=who)
    p = await c.get("/fhir/Patient/p-001", headers=who)
    return "p-001" in listed, r.status_code, f.status_code, p.status_code


async def test_a_refusal_hides_the_patient_from_that_organisation_at_once(
    client: httpx.AsyncClient, fresh_db: str
) -> None:
    assert await _sees(client, auth("rh")) == (True, 200, 200, 200)
    r = await client.post(
        "/api/v1/patients/p-001/consents",
        headers=PORTAL,
        json={"kind": "refusal", "org": "rh", "note": "patient asked at sundhed.dk"},
    )
    assert r.status_code == 201, r.text
    refusal = r.json()
    assert (refusal["kind"], refusal["org"], refusal["in_force"]) == ("refusal", "rh", True)
    assert refusal["recorded_by"] == "sundhed.dk" and refusal["recorded_org"] == "ops"
    # the next request of the refused organisation: gone everywhere, like a patient that
    # does not exist; each refused lookup is audited
    assert await _sees(client, auth("rh")) == (False, 404, 404, 404)
    denied = _q(fresh_db, "SELECT resource FROM audit_events WHERE org_id = 'rh' AND "
                "outcome = 'denied' AND patient_id = 'p-001' ORDER BY id")  # fmt: skip
    assert [d[0] for d in denied] == ["readings", "fhir-observations", "fhir-patient"]
    # the GP is not refused
    assert await _sees(client, auth("gp")) == (True, 200, 200, 200)
    # the refused organisation still sees the refusal (its care relation stands), nothing else
    listed = await client.get("/api/v1/patients/p-001/consents", headers=auth("rh"))
    assert [c["consent_id"] for c in listed.json()["consents"]] == [refusal["consent_id"]]
    assert _q(fresh_db, "SELECT telehub_may_access('rh', 'p-001'), "
              "telehub_may_access('gp', 'p-001')") == [(False, True)]  # fmt: skip
    # withdrawn: visible again at the next request
    w = await client.post(
        f"/api/v1/patients/p-001/consents/{refusal['consent_id']}/withdraw",
        headers=PORTAL,
        json={"note": "changed her mind"},
    )
    assert w.status_code == 200 and w.json()["in_force"] is False
    assert w.json()["note"] == "patient asked at sundhed.dk\nchanged her mind"
    assert await _sees(client, auth("rh")) == (True, 200, 200, 200)
    again = await client.post(
        f"/api/v1/patients/p-001/consents/{refusal['consent_id']}/withdraw",
        headers=PORTAL,
        json={},
    )
    assert again.status_code == 409


async def test_a_sector_refusal_and_a_refusal_of_everybody(
    client: httpx.AsyncClient, fresh_db: str
) -> None:
    r = await client.post("/api/v1/patients/p-001/consents", headers=auth("gp"),
                          json={"kind": "refusal", "sector": "hospital"})  # fmt: skip
    assert r.status_code == 201  # recorded by the GP the patient told
    assert (await _sees(client, auth("rh")))[0] is False
    assert (await _sees(client, auth("gp")))[0] is True
    r = await client.post("/api/v1/patients/p-001/consents", headers=PORTAL,
                          json={"kind": "refusal"})  # fmt: skip
    assert r.status_code == 201
    assert (await _sees(client, auth("gp"))) == (False, 404, 404, 404)
    # consents are kept, never deleted
    assert _q(fresh_db, "SELECT count(*) FROM consents") == [(2,)]


async def test_a_relation_resting_on_consent_gives_access_only_while_it_is_in_force(
    client: httpx.AsyncClient, fresh_db: str
) -> None:
    assert await _sees(client, KOM) == (False, 404, 404, 404)  # a relation, but no consent
    now = datetime.now(UTC)
    r = await client.post(
        "/api/v1/patients/p-001/consents",
        headers=PORTAL,
        json={"kind": "sharing", "sector": "municipality",
              "valid_to": (now + timedelta(days=30)).isoformat()},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert await _sees(client, KOM) == (True, 200, 200, 200)
    # the period ends: no access (the same function, asked about a later time)
    assert _q(fresh_db, "SELECT telehub_may_access('kom', 'p-001', now() + INTERVAL '31 days'),"
              " telehub_may_access('kom', 'p-001', now() + INTERVAL '29 days')"
              ) == [(False, True)]  # fmt: skip
    # a refusal wins over a consent
    await client.post("/api/v1/patients/p-001/consents", headers=PORTAL,
                      json={"kind": "refusal", "org": "kom"})  # fmt: skip
    assert (await _sees(client, KOM))[0] is False
    # a relation that has ended gives nothing, whatever the consent
    assert _q(fresh_db, "SELECT telehub_may_access('gp', 'p-002')") == [(True,)]
    _q(fresh_db, "UPDATE care_relations SET valid_to = now() - INTERVAL '1 day', "
       "valid_from = now() - INTERVAL '10 days' WHERE org_id = 'gp' AND patient_id = 'p-002' "
       "RETURNING 1")  # fmt: skip
    assert _q(fresh_db, "SELECT telehub_may_access('gp', 'p-002')") == [(False,)]


async def test_the_portal_reads_who_looked_and_nothing_else(
    client: httpx.AsyncClient, fresh_db: str
) -> None:
    assert (await client.get(READINGS, headers=auth("rh"))).status_code == 200
    assert (await client.get("/api/v1/patients/p-001/readings",
                             headers=KOM)).status_code == 404  # fmt: skip
    log = await client.get("/api/v1/patients/p-001/access-log", headers=PORTAL)
    assert log.status_code == 200, log.text
    lookups = log.json()["lookups"]
    assert [(x["org"], x["org_name"], x["resource"], x["outcome"]) for x in lookups[:2]] == [
        ("kom", "Odense Kommune", "readings", "denied"),
        ("rh", "Rigshospitalet", "readings", "allowed"),
    ]
    assert lookups[1]["actor"] == "Dr. Hansen" and lookups[1]["purpose"] == "treatment"
    # the portal's own read is in the log too
    fhir = await client.get("/fhir/AuditEvent?patient=p-001", headers=PORTAL)
    assert fhir.status_code == 200
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(fhir.json())
    events: list[Any] = [
        AuditEvent.model_validate(e.resource.model_dump())
        for e in bundle.entry or []
        if e.resource is not None
    ]
    assert len(events) == len(bundle.entry or [])
    assert events[0].entity[0].description == "access-log"
    denied = [e for e in events if e.outcome == "4"]
    assert denied and denied[0].agent[1].who.display == "Odense Kommune"
    assert {e.entity[0].what.reference for e in events} == {"Patient/p-001"}
    # the portal reads no health data; clinicians and operators get no access log
    assert (await client.get(READINGS, headers=PORTAL)).status_code == 404
    assert (await client.get(FHIR_OBS, headers=PORTAL)).status_code == 404
    for who in (auth("rh"), auth("ops")):
        assert (await client.get("/api/v1/patients/p-001/access-log",
                                 headers=who)).status_code == 403  # fmt: skip
        assert (await client.get("/fhir/AuditEvent?patient=p-001",
                                 headers=who)).status_code == 403  # fmt: skip
    assert (await client.get("/api/v1/patients/nobody/access-log",
                             headers=PORTAL)).status_code == 404  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "refusal", "org": "rh", "sector": "gp"}, 422),
        ({"kind": "refusal", "valid_to": "2020-01-01T00:00:00Z"}, 422),
        ({"kind": "refusal", "valid_from": "2030-01-02T00:00:00Z",
          "valid_to": "2030-01-01T00:00:00Z"}, 422),
        ({"kind": "refusal", "org": "no-such-org"}, 422),
        ({"kind": "refusal", "note": "a\x00b"}, 422),
        ({"kind": "refusal", "valid_from": "2030-01-01T00:00:00"}, 422),  # no offset
        ({"kind": "veto"}, 422),
        ({"kind": "refusal", "sector": "operator"}, 422),
        ({"kind": "refusal", "patient": "p-002"}, 422),  # extra field
        ({"kind": "refusal", "purpose": "research"}, 422),
    ],
)  # fmt: skip
async def test_bad_consents_are_refused(
    client: httpx.AsyncClient, fresh_db: str, body: dict[str, Any], status: int
) -> None:
    r = await client.post("/api/v1/patients/p-001/consents", headers=PORTAL, json=body)
    assert r.status_code == status, r.text
    assert _q(fresh_db, "SELECT count(*) FROM consents") == [(0,)]


async def test_who_may_record_consent(client: httpx.AsyncClient, fresh_db: str) -> None:
    body = {"kind": "refusal"}
    # the hospital has no relation to p-002: 404 and a denied audit row, as for any lookup
    r = await client.post("/api/v1/patients/p-002/consents", headers=auth("rh"), json=body)
    assert r.status_code == 404
    assert _q(fresh_db, "SELECT outcome, purpose FROM audit_events WHERE org_id = 'rh' AND "
              "patient_id = 'p-002'") == [("denied", "consent-administration")]  # fmt: skip
    assert (await client.post("/api/v1/patients/p-001/consents", headers=auth("ops"),
                              json=body)).status_code == 403  # fmt: skip
    assert (await client.post("/api/v1/patients/ghost/consents", headers=PORTAL,
                              json=body)).status_code == 404  # fmt: skip
    # a consent id of another patient is not found through this one
    made = await client.post("/api/v1/patients/p-002/consents", headers=PORTAL, json=body)
    cid = made.json()["consent_id"]
    r = await client.post(f"/api/v1/patients/p-001/consents/{cid}/withdraw", headers=PORTAL,
                          json={})  # fmt: skip
    assert r.status_code == 404
    assert _q(fresh_db, "SELECT withdrawn_at FROM consents") == [(None,)]
