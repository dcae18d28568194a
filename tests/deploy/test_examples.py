"""The example files in deploy/ are what the README tells operators to copy: they must load."""

from __future__ import annotations

from pathlib import Path

from edge.config import load_config
from gateway.fleet import load_fleet

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_hub_example_loads_with_every_section() -> None:
    config = load_config(DEPLOY / "hub.example.toml")
    assert (config.hub_id, config.mqtt.tls, config.mqtt.username, config.limits.batch_size) == (
        "hub-0001",
        True,
        "hub-0001",
        100,
    )
    assert [d.device_id for d in config.devices] == [
        "00:09:1F:8A:12:34",
        "00:09:1F:8A:56:78",
        "usb:10c4:ea60",
    ]
    assert config.devices[1].patient_for(2) == "patient-a"


def test_fleet_example_loads_and_is_consistent() -> None:
    fleet = load_fleet(DEPLOY / "fleet.example.toml")
    assert [o.id for o in fleet.orgs] == ["ouh", "gp-esbjerg", "esbjerg", "platform"]
    relations = fleet.patients[0].care_relations()
    assert [(r.org, r.legal_basis) for r in relations] == [
        ("esbjerg", "consent"),
        ("ouh", "treatment"),
        ("gp-esbjerg", "treatment"),
    ]
    assert {r.rule_key for r in fleet.rules} == {"sys-high", "spo2-low"}
    assert [t.role for t in fleet.tokens] == ["clinician", "operator", "portal"]


def test_hub_and_fleet_examples_agree() -> None:
    """Every device the example hub connects is bound, on that hub, to the same patient."""
    config = load_config(DEPLOY / "hub.example.toml")
    fleet = load_fleet(DEPLOY / "fleet.example.toml")
    assert config.hub_id in {h.id for h in fleet.hubs}
    bound = {(d.hub, d.id): d.patient for d in fleet.devices}
    on_hub = {(config.hub_id, d.device_id): d.patient_for(1) for d in config.devices}
    assert on_hub == bound
    assert set(on_hub.values()) <= {p.id for p in fleet.patients}
