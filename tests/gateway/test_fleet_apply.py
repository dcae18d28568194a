"""Fleet description: TOML loading with clear errors, Python constructors, idempotent apply."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from gateway.db import migrate
from gateway.fleet import (
    Device,
    Fleet,
    FleetError,
    Hub,
    Org,
    Patient,
    Rule,
    Token,
    Webhook,
    apply_fleet,
    load_fleet,
)

FLEET_TOML = """
[[orgs]]
id = "rh"
name = "Rigshospitalet"
kind = "hospital"

[[orgs]]
id = "gp1"
name = "Lægehuset"
kind = "gp"

[[tokens]]
token = "secret-token-rh-0123456789"
org = "rh"
clinician = "Dr. Hansen"

[[tokens]]
token = "secret-token-ops-0123456789"
org = "rh"
role = "operator"

[[patients]]
id = "p-001"
display_name = "Test Patient"
orgs = ["rh", "gp1"]

[[hubs]]
id = "hub-001"
org = "rh"

[[devices]]
id = "00:1C:05:AA:BB:CC"
hub = "hub-001"
patient = "p-001"
model = "Nonin 3230"

[[rules]]
key = "spo2-low"
patient = "p-001"
mdc = 150456
op = "<"
threshold = 90
unit = "%"
severity = "critical"
description = "SpO2 below 90 %"

[[rules]]
key = "weight-high"
patient = "p-001"
mdc = 188736
op = ">"
threshold = "120.5"
unit = "kg"

[[webhooks]]
org = "rh"
url = "https://example.org/hook"
secret = "s3"
"""


def _expected() -> Fleet:
    return Fleet(
        orgs=[
            Org(id="rh", name="Rigshospitalet", kind="hospital"),
            Org(id="gp1", name="Lægehuset", kind="gp"),
        ],
        tokens=[
            Token(token="secret-token-rh-0123456789", org="rh", clinician="Dr. Hansen"),
            Token(token="secret-token-ops-0123456789", org="rh", role="operator"),
        ],
        patients=[Patient(id="p-001", display_name="Test Patient", orgs=["rh", "gp1"])],
        hubs=[Hub(id="hub-001", org="rh")],
        devices=[
            Device(id="00:1C:05:AA:BB:CC", hub="hub-001", patient="p-001", model="Nonin 3230")
        ],
        rules=[
            Rule(
                key="spo2-low",
                patient="p-001",
                mdc=150456,
                op="<",
                threshold=Decimal(90),
                unit="%",
                severity="critical",
                description="SpO2 below 90 %",
            ),
            Rule(
                key="weight-high",
                patient="p-001",
                mdc=188736,
                op=">",
                threshold=Decimal("120.5"),
                unit="kg",
            ),
        ],
        webhooks=[Webhook(org="rh", url="https://example.org/hook", secret="s3")],
    )


def test_load_toml_equals_python_constructed(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML, encoding="utf-8")
    assert load_fleet(path) == _expected()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[orgs]\nid = 1",
            "f.toml: not valid TOML: Expected ']]' at the end of an array "
            "declaration (at line 1, column 7)",
        ),
        (
            '[[orgs]]\nid = "a"\nname = "A"\nkind = "clinic"\n',
            "f.toml: invalid fleet: orgs[0].kind: Input should be 'hospital', 'gp', "
            "'municipality' or 'operator'",
        ),
        (
            '[[orgs]]\nid = "a"\nname = 5\nkind = "gp"\ncolour = "red"\n',
            "f.toml: invalid fleet: orgs[0].name: Input should be a valid string; "
            "orgs[0].colour: Extra inputs are not permitted",
        ),
        (
            '[[hubs]]\nid = "a/b"\n',
            "f.toml: invalid fleet: hubs[0].id: hub id 'a/b' contains ['/'] "
            "(it is an MQTT topic segment)",
        ),
        (
            '[[patients]]\nid = "p"\norgs = ["nope"]\n[[devices]]\nid = "d"\nhub = "h"\n'
            'patient = "p"\n',
            "f.toml: invalid fleet: patients[0].orgs: unknown org 'nope'; "
            "devices[0].hub: unknown hub 'h'",
        ),
        (
            '[[patients]]\nid = "p"\n[[rules]]\npatient = "p"\nmdc = 150456\nop = "<"\n'
            'threshold = 90\nunit = "kg"\n',
            "f.toml: invalid fleet: rules[0]: unit 'kg' is not a unit of MDC 150456 (SpO2: ['%'])",
        ),
        (
            '[[patients]]\nid = "p"\n[[rules]]\npatient = "p"\nmdc = 150456\nop = "<"\n'
            'threshold = "ninety"\nunit = "%"\n',
            "f.toml: invalid fleet: rules[0].threshold: threshold 'ninety' is not a decimal number",
        ),
        (
            '[[patients]]\nid = "p"\n[[patients]]\nid = "p"\n',
            "f.toml: invalid fleet: patients: 'p' is declared 2 times",
        ),
    ],
)
def test_bad_fleet_gives_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(FleetError) as err:
        Fleet.from_toml(text, source="f.toml")
    assert str(err.value) == message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"missing\.toml: cannot read: "):
        load_fleet(tmp_path / "missing.toml")


def _dump(conn: psycopg.Connection) -> dict[str, list[tuple[object, ...]]]:
    q = {
        "orgs": "SELECT org_id, name, kind FROM orgs ORDER BY 1",
        "api_tokens": "SELECT token_sha256, org_id, clinician, role FROM api_tokens ORDER BY 2, 4",
        "patients": "SELECT patient_id, display_name FROM patients ORDER BY 1",
        "patient_access": "SELECT patient_id, org_id FROM patient_access ORDER BY 1, 2",
        "hubs": "SELECT hub_id, org_id, state FROM hubs ORDER BY 1",
        "devices": "SELECT hub_id, device_id, patient_id, model FROM devices ORDER BY 1, 2",
        "rules": "SELECT rule_id, patient_id, rule_key, mdc, op, threshold::text, unit, severity,"
        " enabled, description FROM rules ORDER BY 1",
        "webhooks": "SELECT webhook_id, org_id, url, secret FROM webhooks ORDER BY 1",
    }
    return {k: conn.execute(v).fetchall() for k, v in q.items()}


def test_apply_fleet_is_idempotent_and_hashes_tokens(fresh_db: str) -> None:
    migrate(fresh_db)
    fleet = Fleet.from_toml(FLEET_TOML)
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, fleet)
        first = _dump(conn)
        apply_fleet(conn, fleet)
        assert _dump(conn) == first
    sha = hashlib.sha256
    assert first == {
        "orgs": [("gp1", "Lægehuset", "gp"), ("rh", "Rigshospitalet", "hospital")],
        "api_tokens": [
            (sha(b"secret-token-rh-0123456789").digest(), "rh", "Dr. Hansen", "clinician"),
            (sha(b"secret-token-ops-0123456789").digest(), "rh", None, "operator"),
        ],
        "patients": [("p-001", "Test Patient")],
        "patient_access": [("p-001", "gp1"), ("p-001", "rh")],
        "hubs": [("hub-001", "rh", "unknown")],
        "devices": [("hub-001", "00:1C:05:AA:BB:CC", "p-001", "Nonin 3230")],
        "rules": [
            (1, "p-001", "spo2-low", 150456, "<", "90", "%", "critical", True, "SpO2 below 90 %"),
            (2, "p-001", "weight-high", 188736, ">", "120.5", "kg", "warning", True, None),
        ],
        "webhooks": [(1, "rh", "https://example.org/hook", "s3")],
    }


def test_apply_changed_fleet_updates_in_place(fresh_db: str) -> None:
    """Re-binding a device, changing a rule, dropping an org from a care team and a rule from
    the file: updated in place (rule ids stable), dropped rule disabled."""
    migrate(fresh_db)
    fleet = Fleet.from_toml(FLEET_TOML)
    changed = fleet.model_copy(
        update={
            "patients": [
                Patient(id="p-001", display_name="Test Patient", orgs=["gp1"]),
                Patient(id="p-002", orgs=["rh"]),
            ],
            "devices": [Device(id="00:1C:05:AA:BB:CC", hub="hub-001", patient="p-002")],
            "rules": [
                Rule(
                    key="spo2-low",
                    patient="p-001",
                    mdc=150456,
                    op="<=",
                    threshold=Decimal("88"),
                    unit="%",
                    severity="warning",
                )
            ],
        }
    )
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, fleet)
        apply_fleet(conn, Fleet.model_validate(changed.model_dump()))
        got = _dump(conn)
    assert got["patient_access"] == [("p-001", "gp1"), ("p-002", "rh")]
    assert got["devices"] == [("hub-001", "00:1C:05:AA:BB:CC", "p-002", None)]
    assert got["rules"] == [
        (1, "p-001", "spo2-low", 150456, "<=", "88", "%", "warning", True, None),
        (2, "p-001", "weight-high", 188736, ">", "120.5", "kg", "warning", False, None),
    ]
