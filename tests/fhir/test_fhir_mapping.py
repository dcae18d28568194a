"""The PHD IG mapping: every emitted resource validates with fhir.resources (R4B models, which
share R4's Observation/Patient/Device/Bundle), over generated readings of every catalog metric."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import codes
from gateway.catalog import METRICS
from gateway.fhir import mapping as m

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
ALL_FLAGS = sorted(
    {
        *m.INTERPRETATION, m.FLAG_INVALID, m.FLAG_UNAVAILABLE, *m.TEST_FLAGS, *m.MODALITY,
        *(f for names in m.BIT_FIELDS.values() for f in names),
        "sample-type:capillary-whole-blood",
    }
)  # fmt: skip


def reading(**kw: Any) -> m.StoredReading:
    base: dict[str, Any] = {
        "time": T0, "key": "0123456789abcdef0123456789abcdef", "patient_id": "p-001",
        "hub_id": "hub-1", "device_id": "00:1C:05:AA:BB:CC", "kind": "spot", "mdc": 150456,
        "loinc": codes.loinc(150456), "unit": "%", "value": Decimal("97"), "special": None,
        "panel": None, "grp": "g1", "flags": (), "stored_at": T0 + timedelta(seconds=2),
    }  # fmt: skip
    base.update(kw)
    return m.StoredReading(**base)


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON bytes (as served) and the fhir.resources model."""
    data = json.loads(m.dumps(resource))
    model: Any = {"Observation": Observation, "Patient": Patient, "Device": Device}[
        data["resourceType"]
    ]
    model.model_validate(data)
    out: dict[str, Any] = data
    return out


metric_st = st.sampled_from(sorted(METRICS))
value_st = st.decimals(min_value=Decimal("0"), max_value=Decimal("1000"), places=2)
special_st = st.sampled_from([None, None, None, *m.DATA_ABSENT])
flags_st = st.lists(st.sampled_from(ALL_FLAGS), max_size=4, unique=True).map(tuple)


@st.composite
def readings_st(draw: st.DrawFn) -> m.StoredReading:
    mdc = draw(metric_st)
    special = draw(special_st)
    return reading(
        mdc=mdc,
        loinc=codes.loinc(mdc),
        unit=METRICS[mdc].units[0],
        value=None if special else draw(value_st),
        special=special,
        flags=draw(flags_st),
        key=draw(st.text(min_size=1, max_size=80)),
        patient_id=draw(st.text(min_size=1, max_size=40)),
        hub_id=draw(st.text(min_size=1, max_size=30)),
        device_id=draw(st.sampled_from(["00:1C:05:AA:BB:CC", "A&D-UA651"]) | st.text(min_size=1)),
        time=T0 + timedelta(seconds=draw(st.integers(0, 10**8))),
    )


@settings(max_examples=300, deadline=None)
@given(readings_st())
def test_every_metric_maps_to_a_valid_observation(r: m.StoredReading) -> None:
    obs = m.record_observations([r])
    numeric = validate(obs[0])
    assert numeric["code"]["coding"][0] == {"system": m.MDC_SYSTEM, "code": str(r.mdc)}
    assert [c["code"] for c in numeric["code"]["coding"][1:]] == list(r.loinc)
    assert numeric["identifier"] == [m.identifier(m.KEY_SYSTEM, r.key)]
    assert numeric["effectiveDateTime"].endswith("+00:00")
    assert numeric["subject"]["reference"] == "Patient/" + m.patient_fhir_id(r.patient_id)
    assert m.patient_id_of(m.patient_fhir_id(r.patient_id)) in (r.patient_id, None)
    absent = r.special is not None or {m.FLAG_INVALID, m.FLAG_UNAVAILABLE} & set(r.flags)
    assert ("valueQuantity" in numeric) == (not absent)
    assert ("dataAbsentReason" in numeric) == bool(absent)
    if not absent:
        q = numeric["valueQuantity"]
        assert (q["system"], q["code"]) == (m.UCUM_SYSTEM, r.unit)
        assert Decimal(str(q["value"])) == r.value
    for extra in obs[1:]:
        assert validate(extra)["meta"]["profile"] == [m.PROFILE_BITS]
    validate(m.patient(r.patient_id, r.patient_id))
    validate(m.phd_device(r.hub_id, r.device_id, r.patient_id, r.hub_id, [r.mdc]))
    validate(m.gateway_device(r.hub_id))


def test_precision_is_kept_in_the_json() -> None:
    obs = m.numeric_observation(reading(mdc=150364, unit="Cel", value=Decimal("37.00")))
    assert b'"value":37.00' in m.dumps(obs)


def bp_record(**flags: tuple[str, ...]) -> list[m.StoredReading]:
    f = flags.get("flags", ())
    rows = [
        reading(key=f"k{mdc}", mdc=mdc, loinc=codes.loinc(mdc), unit="mm[Hg]", value=Decimal(v),
                panel=codes.MDC_PRESS_BLD_NONINV, flags=f)
        for mdc, v in ((150021, "120"), (150022, "80"), (150023, "93.3"))
    ]  # fmt: skip
    rows.append(reading(key="kpr", mdc=149546, loinc=codes.loinc(149546), unit="/min",
                        value=Decimal("64"), flags=f))  # fmt: skip
    return rows


def test_blood_pressure_is_a_panel_with_components_and_a_separate_pulse() -> None:
    obs = [validate(o) for o in m.record_observations(bp_record())]
    assert [o["code"]["coding"][0]["code"] for o in obs] == ["149546", "150020"]
    panel = obs[1]
    assert panel["meta"]["profile"] == [m.PROFILE_COMPOUND]
    assert [c["code"] for c in panel["code"]["coding"]] == ["150020", "85354-9"]
    assert [(c["code"]["coding"][1]["code"], c["valueQuantity"]["value"]) for c in
            panel["component"]] == [("8480-6", 120), ("8462-4", 80), ("8478-0", 93.3)]  # fmt: skip
    assert {i["value"] for i in panel["identifier"]} == {"k150021", "k150022", "k150023"}
    assert "valueQuantity" not in panel
    vital = {"system": m.OBS_CATEGORY_SYSTEM, "code": "vital-signs"}
    assert vital in [c["coding"][0] for c in panel["category"]]


def test_bp_status_flags_become_a_bits_observation() -> None:
    rows = bp_record(flags=("irregular-pulse", "improper-position"))
    obs = [validate(o) for o in m.record_observations(rows)]
    bits = obs[-1]
    assert bits["code"]["coding"] == [{"system": m.MDC_SYSTEM, "code": "8410608"}]
    assert [(c["code"]["coding"][0]["code"], c["valueBoolean"]) for c in bits["component"]] == [
        ("8410608.2", True),
        ("8410608.5", True),
    ]
    assert bits["code"]["coding"][0]["system"] == m.MDC_SYSTEM


def test_plx_device_status_uses_the_reversed_11073_numbering() -> None:
    (_num, bits) = m.record_observations([reading(flags=("sensor-disconnected",))])
    assert bits["component"][0]["code"]["coding"][0]["code"] == "150604.0"


def test_measurement_status_per_the_ig() -> None:
    invalid = m.numeric_observation(reading(flags=(m.FLAG_INVALID,)))
    assert invalid["status"] == "entered-in-error"
    assert invalid["dataAbsentReason"]["coding"][0]["code"] == "error"
    unavailable = m.numeric_observation(reading(flags=(m.FLAG_UNAVAILABLE,)))
    assert unavailable["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    early = m.numeric_observation(reading(flags=("early-estimated-data", "data-for-testing")))
    assert early["status"] == "preliminary"
    assert early["interpretation"][0]["coding"][0]["code"] == "early-indication"
    assert early["meta"]["security"][0]["code"] == "HTEST"
    q = m.numeric_observation(reading(flags=("questionable-measurement-detected",)))
    assert q["interpretation"][0]["coding"][0] == {
        "system": m.MEASUREMENT_STATUS_SYSTEM,
        "code": "questionable",
    }


def test_special_values() -> None:
    got = {
        s: m.numeric_observation(reading(value=None, special=s))["dataAbsentReason"]["coding"][0]
        for s in ("nan", "nres", "+inf", "-inf", "reserved")
    }
    assert {s: c["code"] for s, c in got.items()} == {
        "nan": "not-a-number",
        "nres": "error",
        "+inf": "positive-infinity",
        "-inf": "negative-infinity",
        "reserved": "error",
    }
    assert {c["system"] for c in got.values()} == {m.DATA_ABSENT_SYSTEM}


def test_devices_reference_each_other() -> None:
    r = reading()
    obs = m.numeric_observation(r)
    dev = validate(m.phd_device(r.hub_id, r.device_id, r.patient_id, "Nonin", [r.mdc]))
    gw = validate(m.gateway_device(r.hub_id))
    assert obs["device"]["reference"] == f"Device/{dev['id']}"
    assert obs["extension"] == [
        {"url": m.GATEWAY_EXTENSION, "valueReference": {"reference": f"Device/{gw['id']}"}}
    ]
    assert dev["identifier"][0]["value"] == "00-1c-05-aa-bb-cc"
    assert dev["specialization"][0]["systemType"]["coding"][0]["code"] == "528388"


def test_patient_ids_round_trip() -> None:
    for pid in ("p-001", "a b", "h.70", "æøå", "x" * 64):
        fid = m.patient_fhir_id(pid)
        assert m.patient_id_of(fid) == pid
    assert m.patient_id_of("d." + "0" * 32) is None
    assert m.patient_id_of("h.zz") is None


def test_code_tokens() -> None:
    assert m.observation_codes("http://loinc.org|85354-9") == ({150020}, {"85354-9"})
    assert m.observation_codes("urn:iso:std:iso:11073:10101|150456") == ({150456}, set())
    assert m.observation_codes("http://snomed.info/sct|123") is None


@given(st.text(min_size=1), st.text(min_size=1))
def test_identifiers_are_valid_and_never_shared_by_different_ids(a: str, b: str) -> None:
    ia, ib = m.identifier(m.KEY_SYSTEM, a), m.identifier(m.KEY_SYSTEM, b)
    assert m.is_fhir_string(ia["value"])
    assert (ia == ib) == (a == b)


def test_a_control_character_is_percent_encoded() -> None:
    assert m.identifier(m.PATIENT_SYSTEM, "a\x0c%") == {
        "system": m.PATIENT_SYSTEM + m.ENCODED_SUFFIX,
        "value": "a%0C%25",
    }
    assert m.identifier(m.PATIENT_SYSTEM, "a%0C") == {"system": m.PATIENT_SYSTEM, "value": "a%0C"}
