"""The /fhir read API against real PostgreSQL: scoping, search, paging, errors, and a third-party
FHIR client (fhirpy) reading a patient's observations from a real uvicorn server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhirpy import AsyncFHIRClient

from gateway.api import create_app
from gateway.fhir import mapping as m
from tests.gateway.api_support import TOKENS, api_client, auth, insert_reading, seed, serve

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
SPO2_TIMES = [T0 + timedelta(minutes=i) for i in range(7)]


def load(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for i, t in enumerate(SPO2_TIMES):
            insert_reading(conn, key=f"spo2-{i}", time=t, grp=f"g{i}", value=Decimal(f"9{i}"))
        bp = [(150021, "120"), (150022, "80"), (150023, "93")]
        for mdc, v in bp:
            insert_reading(
                conn, key=f"bp-{mdc}", time=T0 + timedelta(hours=1), grp="bp", mdc=mdc,
                loinc=[{150021: "8480-6", 150022: "8462-4", 150023: "8478-0"}[mdc]],
                unit="mm[Hg]", mdc_unit=266016, value=Decimal(v), panel=150020,
                flags=["irregular-pulse"], source="2a35", kind="spot",
            )  # fmt: skip
        insert_reading(
            conn, key="bp-pr", time=T0 + timedelta(hours=1), grp="bp", mdc=149546,
            loinc=["8867-4"], unit="/min", mdc_unit=264864, value=Decimal("64"),
            flags=["irregular-pulse"], source="2a35", kind="spot",
        )  # fmt: skip
        insert_reading(conn, key="nan-1", time=T0 - timedelta(days=1), grp="n", value=None,
                       special="nan")  # fmt: skip
        insert_reading(conn, key="other-1", patient_id="p-002", hub_id="hub-gp-1",
                       device_id="A&D-UA651", grp="o")  # fmt: skip


@pytest.fixture
def db(fresh_db: str) -> str:
    seed(fresh_db)
    load(fresh_db)
    return fresh_db


@pytest.fixture
async def client(db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(db)) as c:
        yield c


def outcome(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/fhir+json"
    body = r.json()
    OperationOutcome.model_validate(body)
    assert body["issue"][0]["code"] == code


async def all_pages(client: httpx.AsyncClient, url: str, org: str = "rh") -> list[dict[str, Any]]:
    bundles = []
    while True:
        r = await client.get(url, headers=auth(org))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/fhir+json"
        body = r.json()
        Bundle.model_validate(body)
        bundles.append(body)
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not nxt:
            return bundles
        url = nxt[0]


async def test_metadata(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json"
    cs = r.json()
    CapabilityStatement.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1"
    assert {res["type"] for res in cs["rest"][0]["resource"]} == {
        "Patient",
        "Observation",
        "Device",
    }


async def test_patient_read_and_scoping(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/p-001", headers=auth("rh"))
    assert r.status_code == 200
    Patient.model_validate(r.json())
    assert r.json()["identifier"] == [{"system": m.PATIENT_SYSTEM, "value": "p-001"}]
    # another organisation's patient reads exactly like a patient that does not exist
    hidden = await client.get("/fhir/Patient/p-002", headers=auth("rh"))
    missing = await client.get("/fhir/Patient/p-999", headers=auth("rh"))
    outcome(hidden, 404, "not-found")
    assert hidden.json() == missing.json()
    for path in ("/fhir/Observation?patient=p-002", "/fhir/Device?patient=p-002"):
        r = await client.get(path, headers=auth("rh"))
        outcome(r, 404, "not-found")
        assert r.json()["issue"][0]["diagnostics"] == "Patient not found"
    assert (await client.get("/fhir/Patient/p-002", headers=auth("gp"))).status_code == 200


async def test_authentication(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/p-001")
    outcome(r, 401, "login")
    assert r.headers["www-authenticate"].startswith("Bearer")
    outcome(await client.get("/fhir/Patient/p-001", headers={"Authorization": "Bearer x"}), 401,
            "login")  # fmt: skip


@pytest.mark.parametrize("count", [1, 3, 50])
async def test_observation_paging_returns_every_observation_once(
    client: httpx.AsyncClient, count: int
) -> None:
    bundles = await all_pages(client, f"/fhir/Observation?patient=p-001&_count={count}")
    assert len(bundles) == -(-10 // count)  # 10 observations (7 SpO2, panel, pulse, NaN)
    matches = [e for b in bundles for e in b["entry"] if e["search"]["mode"] == "match"]
    includes = [e for b in bundles for e in b["entry"] if e["search"]["mode"] == "include"]
    assert all(len([e for e in b["entry"] if e["search"]["mode"] == "match"]) <= count
               for b in bundles)  # fmt: skip
    ids = [e["resource"]["id"] for e in matches]
    assert len(ids) == len(set(ids)) == 10
    times = [e["resource"]["effectiveDateTime"] for e in matches]
    assert times == sorted(times, reverse=True)
    keys = {i["value"] for e in matches for i in e["resource"]["identifier"]}
    assert keys == {f"spo2-{i}" for i in range(7)} | {"bp-150021", "bp-150022", "bp-150023",
                                                      "bp-pr", "nan-1"}  # fmt: skip
    # the BP record's status bits come with its first Observation on each page that has one
    assert {e["resource"]["code"]["coding"][0]["code"] for e in includes} == {"8410608"}
    nan = next(e["resource"] for e in matches if e["resource"]["id"] == "nan-1")
    assert nan["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    assert all(e["fullUrl"].startswith("http://api/fhir/Observation/") for e in matches)


async def test_code_and_date_filters(client: httpx.AsyncClient) -> None:
    (b,) = await all_pages(client, "/fhir/Observation?patient=p-001&code=http://loinc.org|85354-9")
    panel = [e["resource"] for e in b["entry"] if e["search"]["mode"] == "match"]
    assert [p["code"]["coding"][0]["code"] for p in panel] == ["150020"]
    assert [c["valueQuantity"]["value"] for c in panel[0]["component"]] == [120, 80, 93]
    (b,) = await all_pages(client, "/fhir/Observation?patient=Patient/p-001&code=8867-4")
    assert [(e["resource"]["identifier"][0]["value"], e["search"]["mode"]) for e in b["entry"]] == [
        ("bp-pr", "match"),
        ("bp-pr#8410608", "include"),  # the record's status bits come with its first match
    ]
    start, end = SPO2_TIMES[2].isoformat(), SPO2_TIMES[4].isoformat()
    (b,) = await all_pages(
        client,
        "/fhir/Observation?patient=p-001&code=urn:iso:std:iso:11073:10101|150456"
        f"&date=ge{start.replace('+', '%2B')}&date=le{end.replace('+', '%2B')}",
    )
    assert [e["resource"]["id"] for e in b["entry"]] == ["spo2-4", "spo2-3", "spo2-2"]
    (b,) = await all_pages(client, "/fhir/Observation?patient=p-001&date=2025-02-28")
    assert [e["resource"]["id"] for e in b["entry"]] == ["nan-1"]
    (b,) = await all_pages(client, "/fhir/Observation?patient=p-001&code=http://snomed.info/sct|1")
    assert b["entry"] == []


async def test_devices(client: httpx.AsyncClient) -> None:
    (b,) = await all_pages(client, "/fhir/Device?patient=p-001")
    devices = [e["resource"] for e in b["entry"]]
    assert [d["meta"]["profile"][0] for d in devices] == [m.PROFILE_DEVICE, m.PROFILE_GATEWAY]
    assert devices[0]["identifier"][0]["value"] == "00-1c-05-aa-bb-cc"
    assert devices[1]["identifier"] == [{"system": m.HUB_SYSTEM, "value": "hub-rh-1"}]


@pytest.mark.parametrize(
    "query",
    [
        "/fhir/Observation",
        "/fhir/Observation?patient=p-001&patient=p-002",
        "/fhir/Observation?patient=p%00x",
        "/fhir/Observation?patient=p-001&_count=0",
        "/fhir/Observation?patient=p-001&_count=abc",
        "/fhir/Observation?patient=p-001&_count=100000",
        "/fhir/Observation?patient=p-001&_cursor=abc",
        "/fhir/Observation?patient=p-001&_cursor=WyJ4IiwxXQ",
        "/fhir/Observation?patient=p-001&_offset=10",
        "/fhir/Observation?patient=p-001&date=yesterday",
        "/fhir/Observation?patient=p-001&date=ge2025-03-01T10:00:00",
        "/fhir/Observation?patient=p-001&date=ge2025-13-01",
        "/fhir/Observation?patient=p-001&code=a%00b",
        "/fhir/Observation?patient=p-001&_sort=date",
        "/fhir/Device?patient=p-001&name=x",
    ],
)
async def test_bad_searches_are_400(client: httpx.AsyncClient, query: str) -> None:
    outcome(await client.get(query, headers=auth("rh")), 400, "invalid")


async def test_bad_paths(client: httpx.AsyncClient) -> None:
    # a NUL never reaches the router (gateway/api/hygiene.py): 400, still an OperationOutcome
    outcome(await client.get("/fhir/Patient/a%00b", headers=auth("rh")), 400, "invalid")
    outcome(await client.get("/fhir/Patient/" + "x" * 300, headers=auth("rh")), 404, "not-found")
    outcome(await client.get("/fhir/Encounter", headers=auth("rh")), 404, "not-supported")
    outcome(await client.delete("/fhir/Patient/p-001", headers=auth("rh")), 404, "not-supported")


async def test_fhirpy_reads_observations_from_a_real_server(db: str) -> None:
    app = create_app(db)
    async with app.router.lifespan_context(app), serve(app) as base:
        client = AsyncFHIRClient(f"{base}/fhir", authorization=f"Bearer {TOKENS['rh']}")
        patient = await client.reference("Patient", "p-001").to_resource()
        assert patient["identifier"][0]["value"] == "p-001"
        search = client.resources("Observation").search(patient="p-001").limit(4)
        observations = await search.fetch_all()
        keys = sorted(i["value"] for o in observations for i in o["identifier"])
        assert len(keys) == 13  # 7 SpO2 + 3 panel components + pulse + NaN + bits
        spo2 = (
            await client.resources("Observation").search(patient="p-001", code="150456").fetch_all()
        )
        values = sorted(o["valueQuantity"]["value"] for o in spo2 if "valueQuantity" in o)
        assert values == list(range(90, 97))
        assert [
            o["dataAbsentReason"]["coding"][0]["code"] for o in spo2 if "valueQuantity" not in o
        ] == ["not-a-number"]


async def test_database_unavailable_is_a_503_operation_outcome() -> None:
    app = create_app("postgresql://postgres@127.0.0.1:1/none", acquire_timeout=0.5)
    async with api_client(app) as c:
        r = await c.get("/fhir/Observation?patient=p-001", headers=auth("rh"))
    outcome(r, 503, "transient")
    assert r.headers["retry-after"] == "5"
