"""Pure mapping of stored ``readings`` rows to FHIR R4 resources per the HL7 PHD IG.

One device record (the rows sharing ``time``, ``hub_id``, ``device_id`` and ``grp``) becomes:

* one ``Observation`` per metric (``PhdNumericObservation``), except the metrics of a compound
  (``panel``, e.g. BP 150020), which become one ``PhdCompoundNumericObservation`` with a
  ``component`` per metric (systolic, diastolic, mean);
* one ``PhdBitsEnumerationObservation`` per status bit field that has a bit set (BP measurement
  status 8410608, PLX device and sensor status 150604, glucose annunciation 8417752), with a
  ``component`` ``<MDC>.<bit>`` (ASN1ToHL7) ``valueBoolean = true`` per set flag.

Values keep the device's precision (``Decimal``; encode with :func:`dumps`). Special values have
no ``value[x]`` and a ``dataAbsentReason``. Measurement-status flags follow the IG: invalid →
``dataAbsentReason=error`` and ``status=entered-in-error``; not available →
``dataAbsentReason=not-performed``; questionable, calibration ongoing, early estimate, validated
→ ``interpretation`` (early estimate also ``status=preliminary``); test or demonstration data →
``meta.security`` HTEST.

Nothing here does I/O; ids are derived deterministically so a resource always has the same id.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from drivers import codes

Resource = dict[str, Any]

# -- systems and profiles ------------------------------------------------------------------------
MDC_SYSTEM: Final = codes.MDC_SYSTEM
LOINC_SYSTEM: Final = codes.LOINC_SYSTEM
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"
ASN1_SYSTEM: Final = codes.ASN1_SYSTEM
DATA_ABSENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MEASUREMENT_STATUS_SYSTEM: Final = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
OBS_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY_SYSTEM: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
ACT_REASON_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DEVICE_ID_TYPE_SYSTEM: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers"
BT_MAC_SYSTEM: Final = "http://hl7.org/fhir/sid/eui-48/bluetooth"
GATEWAY_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"

#: Identifier systems of telehub's own identifiers.
KEY_SYSTEM: Final = "urn:telehub:reading-key"
PATIENT_SYSTEM: Final = "urn:telehub:patient"
DEVICE_SYSTEM: Final = "urn:telehub:device"
HUB_SYSTEM: Final = "urn:telehub:hub"

_PHD: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
PROFILE_NUMERIC: Final = _PHD + "PhdNumericObservation"
PROFILE_COMPOUND: Final = _PHD + "PhdCompoundNumericObservation"
PROFILE_BITS: Final = _PHD + "PhdBitsEnumerationObservation"
PROFILE_PATIENT: Final = _PHD + "PhdPatient"
PROFILE_DEVICE: Final = _PHD + "PhdDevice"
PROFILE_GATEWAY: Final = _PHD + "PhgDevice"

#: Special value (readings.special) -> data-absent-reason code (reference §1.1).
DATA_ABSENT: Final[Mapping[str, str]] = {
    "nan": "not-a-number",
    "nres": "error",
    "+inf": "positive-infinity",
    "-inf": "negative-infinity",
    "reserved": "error",
    "unsuccessful": "error",
    "missing": "unknown",
}

#: Measurement-status flag -> PHD measurement-status interpretation code.
INTERPRETATION: Final[Mapping[str, str]] = {
    "questionable-measurement-detected": "questionable",
    "calibration-ongoing": "calibration-ongoing",
    "early-estimated-data": "early-indication",
    "validated-data": "validated-data",
    "measurement-ongoing": "msmt-ongoing",
}
FLAG_INVALID: Final = "invalid-measurement-detected"
FLAG_UNAVAILABLE: Final = "measurement-unavailable"
FLAG_EARLY: Final = "early-estimated-data"
TEST_FLAGS: Final = frozenset({"data-for-testing", "data-for-demonstration"})

_GLU_STATUS: Final = {
    "battery-low": 0, "sensor-malfunction": 1, "sample-size-insufficient": 2,
    "strip-insertion-error": 3, "strip-type-incorrect": 4, "result-too-high": 5,
    "result-too-low": 6, "temperature-too-high": 7, "temperature-too-low": 8,
    "read-interrupted": 9, "general-device-fault": 10, "time-fault": 11,
}  # fmt: skip
#: Status bit field (MDC code) -> flag name -> ASN1ToHL7 component index.
BIT_FIELDS: Final[Mapping[int, Mapping[str, int]]] = {
    codes.MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS: codes.BP_STATUS_COMPONENTS,
    codes.MDC_PULS_OXIM_DEV_STATUS: {n: comp for n, (_, comp) in codes.PLX_DEVICE_STATUS.items()},
    codes.MDC_GLU_METER_DEV_STATUS: _GLU_STATUS,
}
MODALITY: Final[Mapping[str, int]] = {
    "modality:fast": codes.MDC_MODALITY_FAST,
    "modality:slow": codes.MDC_MODALITY_SLOW,
}

#: LOINC codes of the FHIR vital-signs profiles (category vital-signs).
VITAL_SIGNS_LOINC: Final = frozenset(
    {
        codes.LOINC_BODY_WEIGHT, codes.LOINC_BODY_HEIGHT, codes.LOINC_BMI, codes.LOINC_BP_PANEL,
        codes.LOINC_SYSTOLIC, codes.LOINC_DIASTOLIC, codes.LOINC_HEART_RATE, codes.LOINC_SPO2,
        codes.LOINC_BODY_TEMP,
    }
)  # fmt: skip

#: Device specialisation (PhdDevice.specialization) by metric.
_SPEC_BY_MDC: Final[dict[int, int]] = {
    **dict.fromkeys(
        (codes.MDC_PULS_OXIM_SAT_O2, codes.MDC_PULS_OXIM_PULS_RATE, codes.MDC_PULS_OXIM_PERF_REL,
         codes.MDC_SAT_O2_QUAL),
        codes.MDC_DEV_SPEC_PROFILE_PULS_OXIM,
    ),
    **dict.fromkeys(
        (codes.MDC_PRESS_BLD_NONINV_SYS, codes.MDC_PRESS_BLD_NONINV_DIA,
         codes.MDC_PRESS_BLD_NONINV_MEAN, codes.MDC_PULS_RATE_NON_INV),
        codes.MDC_DEV_SPEC_PROFILE_BP,
    ),
    **dict.fromkeys(
        (codes.MDC_TEMP_BODY, codes.MDC_TEMP_TYMP, codes.MDC_TEMP_RECT, codes.MDC_TEMP_ORAL,
         codes.MDC_TEMP_EAR, codes.MDC_TEMP_FINGER, codes.MDC_TEMP_TOE, codes.MDC_TEMP_AXILLA,
         codes.MDC_TEMP_GIT),
        codes.MDC_DEV_SPEC_PROFILE_TEMP,
    ),
    **dict.fromkeys(
        (codes.MDC_MASS_BODY_ACTUAL, codes.MDC_LEN_BODY_ACTUAL, codes.MDC_RATIO_MASS_BODY_LEN_SQ),
        codes.MDC_DEV_SPEC_PROFILE_SCALE,
    ),
    **dict.fromkeys(
        (codes.MDC_BODY_FAT, codes.MDC_MASS_BODY_FAT_FREE, codes.MDC_MASS_BODY_SOFT_LEAN,
         codes.MDC_BODY_WATER, codes.MDC_BASAL_METABOLISM, codes.MDC_BODY_MUSCLE,
         codes.MDC_MASS_BODY_MUSCLE, codes.MDC_BODY_ELECTRICAL_IMPEDANCE),
        codes.MDC_DEV_SPEC_PROFILE_BCA,
    ),
    **dict.fromkeys(
        (codes.MDC_CONC_GLU_GEN, codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD,
         codes.MDC_CONC_GLU_CAPILLARY_PLASMA, codes.MDC_CONC_GLU_VENOUS_WHOLEBLOOD,
         codes.MDC_CONC_GLU_VENOUS_PLASMA, codes.MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD,
         codes.MDC_CONC_GLU_ARTERIAL_PLASMA, codes.MDC_CONC_GLU_CONTROL, codes.MDC_CONC_GLU_ISF,
         codes.MDC_CONC_GLU_UNDETERMINED_PLASMA),
        codes.MDC_DEV_SPEC_PROFILE_GLUCOSE,
    ),
}  # fmt: skip

_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_MAC_RE: Final = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}")

_encoder: Final = msgspec.json.Encoder(decimal_format="number")

#: What a FHIR ``string`` may hold (the R4 regex): no control or non-space whitespace characters.
_FHIR_STRING_RE: Final = re.compile(r"[ \r\n\t\S]+")
#: Suffix of an identifier system whose value is percent-encoded (see :func:`identifier`).
ENCODED_SUFFIX: Final = ":percent-encoded"


def is_fhir_string(value: str) -> bool:
    return _FHIR_STRING_RE.fullmatch(value) is not None


def identifier(system: str, value: str) -> Resource:
    """An Identifier carrying ``value`` exactly. A value that is not a valid FHIR string (a
    control character in a fleet id, say) is percent-encoded (UTF-8) under ``system`` +
    ``:percent-encoded``, so different ids never share an identifier."""
    if is_fhir_string(value):
        return {"system": system, "value": value}
    encoded = "".join(
        ch if ch != "%" and is_fhir_string(ch) else urllib.parse.quote(ch, safe="") for ch in value
    )
    return {"system": system + ENCODED_SUFFIX, "value": encoded}


def text(value: str) -> str:
    """A display text: characters a FHIR string cannot hold become U+FFFD."""
    if is_fhir_string(value):
        return value
    return "".join(ch if is_fhir_string(ch) else "\ufffd" for ch in value) or "\ufffd"


def dumps(resource: object) -> bytes:
    """JSON bytes of a resource; Decimals are JSON numbers with their precision (``2.00``)."""
    return _encoder.encode(resource)


# -- ids -------------------------------------------------------------------------------------------
def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode())
        h.update(b"\x00")
    return h.hexdigest()


def patient_fhir_id(patient_id: str) -> str:
    """The Patient id: the patient id itself when it is a valid FHIR id (and does not start with
    ``h.``), else ``h.`` + its UTF-8 hex, else (too long) a digest that cannot be read back."""
    if _ID_RE.fullmatch(patient_id) and not patient_id.startswith("h."):
        return patient_id
    hexed = "h." + patient_id.encode().hex()
    return hexed if len(hexed) <= 64 else "d." + _digest("patient", patient_id)


def patient_id_of(fhir_id: str) -> str | None:
    """Inverse of :func:`patient_fhir_id` (None when the id cannot be a telehub patient)."""
    if not _ID_RE.fullmatch(fhir_id) or fhir_id.startswith("d."):
        return None
    if fhir_id.startswith("h."):
        try:
            return bytes.fromhex(fhir_id[2:]).decode()
        except ValueError:
            return None
    return fhir_id


def phd_device_id(hub_id: str, device_id: str) -> str:
    return "phd-" + _digest("phd", hub_id, device_id)


def gateway_device_id(hub_id: str) -> str:
    return "phg-" + _digest("phg", hub_id)


def observation_id(key: str, suffix: str = "") -> str:
    """The Observation id of the reading with this key (``suffix`` for derived resources)."""
    base = key if _ID_RE.fullmatch(key) and len(key) <= 40 else _digest("key", key)
    return f"{base}{suffix}"


# -- stored rows -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StoredReading:
    """The columns of a ``readings`` row that the FHIR mapping uses."""

    time: datetime
    key: str
    patient_id: str
    hub_id: str
    device_id: str
    kind: str
    mdc: int
    loinc: tuple[str, ...]
    unit: str
    value: Decimal | None
    special: str | None
    panel: int | None
    grp: str
    flags: tuple[str, ...]
    stored_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredReading:
        return cls(
            time=row["time"],
            key=row["key"],
            patient_id=row["patient_id"],
            hub_id=row["hub_id"],
            device_id=row["device_id"],
            kind=row["kind"],
            mdc=int(row["mdc"]),
            loinc=tuple(row["loinc"] or ()),
            unit=row["unit"],
            value=row["value"],
            special=row["special"],
            panel=row["panel"],
            grp=row["grp"],
            flags=tuple(row["flags"] or ()),
            stored_at=row.get("stored_at"),
        )

    @property
    def obs_code(self) -> int:
        """MDC code of the Observation this row is part of (its panel's, if any)."""
        return self.panel if self.panel is not None else self.mdc

    @property
    def record(self) -> tuple[datetime, str, str, str]:
        """What identifies the device record the row came from."""
        return (self.time, self.hub_id, self.device_id, self.grp)


# -- pieces ----------------------------------------------------------------------------------------
def _coding(system: str, code: str, display: str | None = None) -> Resource:
    c: Resource = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def metric_code(mdc: int, loinc: Iterable[str] = ()) -> Resource:
    """A CodeableConcept with the MDC coding first, then the LOINC codings."""
    codings = [_coding(MDC_SYSTEM, str(mdc))]
    codings += [_coding(LOINC_SYSTEM, lc) for lc in loinc]
    return {"coding": codings}


def _loinc_of(mdc: int, stored: Sequence[str]) -> tuple[str, ...]:
    return tuple(stored) or codes.loinc(mdc)


def _quantity(value: Decimal, unit: str) -> Resource:
    return {"value": value, "unit": unit, "system": UCUM_SYSTEM, "code": unit}


def _absent(code: str) -> Resource:
    return {"coding": [_coding(DATA_ABSENT_SYSTEM, code)]}


def _value(r: StoredReading) -> Resource:
    """``valueQuantity`` or ``dataAbsentReason`` of one metric (flags of the metric applied)."""
    if FLAG_INVALID in r.flags:
        return {"dataAbsentReason": _absent("error")}
    if FLAG_UNAVAILABLE in r.flags:
        return {"dataAbsentReason": _absent("not-performed")}
    if r.special is not None or r.value is None:
        return {"dataAbsentReason": _absent(DATA_ABSENT.get(r.special or "", "error"))}
    return {"valueQuantity": _quantity(r.value, r.unit)}


def _ref(resource_type: str, rid: str) -> Resource:
    return {"reference": f"{resource_type}/{rid}"}


def _common(first: StoredReading, rows: Sequence[StoredReading], profile: str) -> Resource:
    """What every Observation of a record carries (meta, status, category, subject, time,
    device, gateway)."""
    flags = {f for r in rows for f in r.flags}
    meta: Resource = {"profile": [profile]}
    if flags & TEST_FLAGS:
        meta["security"] = [_coding(ACT_REASON_SYSTEM, "HTEST", "test health data")]
    if FLAG_INVALID in flags:
        status = "entered-in-error"
    elif FLAG_EARLY in flags:
        status = "preliminary"
    else:
        status = "final"
    loincs = {lc for r in rows for lc in _loinc_of(r.mdc, r.loinc)}
    category = [{"coding": [_coding(PHD_CATEGORY_SYSTEM, "phd")]}]
    if loincs & VITAL_SIGNS_LOINC:
        category.append({"coding": [_coding(OBS_CATEGORY_SYSTEM, "vital-signs")]})
    out: Resource = {
        "resourceType": "Observation",
        "meta": meta,
        "identifier": [identifier(KEY_SYSTEM, r.key) for r in rows],
        "status": status,
        "category": category,
        "subject": _ref("Patient", patient_fhir_id(first.patient_id)),
        "effectiveDateTime": first.time.isoformat(),
        "device": _ref("Device", phd_device_id(first.hub_id, first.device_id)),
        "extension": [
            {
                "url": GATEWAY_EXTENSION,
                "valueReference": _ref("Device", gateway_device_id(first.hub_id)),
            }
        ],
    }
    if first.stored_at is not None:
        out["issued"] = first.stored_at.isoformat()
    interpretation = sorted({INTERPRETATION[f] for f in flags if f in INTERPRETATION})
    if interpretation:
        out["interpretation"] = [
            {"coding": [_coding(MEASUREMENT_STATUS_SYSTEM, c)]} for c in interpretation
        ]
    modality = sorted({MODALITY[f] for f in flags if f in MODALITY})
    if modality:
        out["method"] = {"coding": [_coding(MDC_SYSTEM, str(m)) for m in modality]}
    return out


# -- resources -------------------------------------------------------------------------------------
def numeric_observation(r: StoredReading) -> Resource:
    obs = _common(r, [r], PROFILE_NUMERIC)
    obs["id"] = observation_id(r.key)
    obs["code"] = metric_code(r.mdc, _loinc_of(r.mdc, r.loinc))
    obs.update(_value(r))
    return obs


def compound_observation(rows: Sequence[StoredReading]) -> Resource:
    """One panel (rows of one record with the same ``panel``), components in MDC code order."""
    rows = sorted(rows, key=lambda r: (r.mdc, r.key))
    first = rows[0]
    assert first.panel is not None
    obs = _common(first, rows, PROFILE_COMPOUND)
    obs["id"] = observation_id(first.key)
    obs["code"] = metric_code(first.panel, codes.loinc(first.panel))
    obs["component"] = [
        {"code": metric_code(r.mdc, _loinc_of(r.mdc, r.loinc)), **_value(r)} for r in rows
    ]
    return obs


def bits_observations(rows: Sequence[StoredReading]) -> list[Resource]:
    """A PhdBitsEnumerationObservation per status bit field with a bit set in the record."""
    first = min(rows, key=lambda r: (r.mdc, r.key))
    flags = {f for r in rows for f in r.flags}
    out = []
    for field, names in BIT_FIELDS.items():
        on = sorted((names[f], f) for f in flags if f in names)
        if not on:
            continue
        obs = _common(first, [first], PROFILE_BITS)
        obs["id"] = observation_id(first.key, f"-s{field}")
        obs["identifier"] = [identifier(KEY_SYSTEM, f"{first.key}#{field}")]
        obs["code"] = metric_code(field)
        obs.pop("interpretation", None)
        obs["status"] = "final"
        obs["component"] = [
            {
                "code": {"coding": [_coding(ASN1_SYSTEM, f"{field}.{bit}", name)]},
                "valueBoolean": True,
            }
            for bit, name in on
        ]
        out.append(obs)
    return out


def record_observations(rows: Sequence[StoredReading]) -> list[Resource]:
    """All Observations of one device record (rows of one ``StoredReading.record``)."""
    out: list[Resource] = []
    panels: dict[int, list[StoredReading]] = {}
    for r in sorted(rows, key=lambda r: (r.mdc, r.key)):
        if r.panel is None:
            out.append(numeric_observation(r))
        else:
            panels.setdefault(r.panel, []).append(r)
    out += [compound_observation(p) for p in panels.values()]
    if rows:
        out += bits_observations(rows)
    return out


def group_records(rows: Iterable[StoredReading]) -> list[list[StoredReading]]:
    """Rows grouped by device record, in first-seen order."""
    groups: dict[tuple[datetime, str, str, str], list[StoredReading]] = {}
    for r in rows:
        groups.setdefault(r.record, []).append(r)
    return list(groups.values())


def observations(rows: Iterable[StoredReading]) -> list[Resource]:
    return [obs for g in group_records(rows) for obs in record_observations(g)]


def patient(patient_id: str, display_name: str | None) -> Resource:
    out: Resource = {
        "resourceType": "Patient",
        "id": patient_fhir_id(patient_id),
        "meta": {"profile": [PROFILE_PATIENT]},
        "identifier": [identifier(PATIENT_SYSTEM, patient_id)],
    }
    if display_name:
        out["name"] = [{"text": text(display_name)}]
    return out


def device_identifiers(device_id: str, hub_id: str) -> list[Resource]:
    ids: list[Resource] = []
    if _MAC_RE.fullmatch(device_id):
        ids.append(
            {
                "type": {"coding": [_coding(DEVICE_ID_TYPE_SYSTEM, "BTMAC")]},
                "system": BT_MAC_SYSTEM,
                "value": device_id.lower().replace(":", "-"),
            }
        )
    ids.append(identifier(DEVICE_SYSTEM, f"{hub_id}/{device_id}"))
    return ids


def specializations(mdcs: Iterable[int]) -> list[int]:
    return sorted({_SPEC_BY_MDC[m] for m in mdcs if m in _SPEC_BY_MDC})


def phd_device(
    hub_id: str,
    device_id: str,
    patient_id: str,
    model: str | None,
    mdcs: Iterable[int] = (),
) -> Resource:
    out: Resource = {
        "resourceType": "Device",
        "id": phd_device_id(hub_id, device_id),
        "meta": {"profile": [PROFILE_DEVICE]},
        "identifier": device_identifiers(device_id, hub_id),
        "status": "active",
        "patient": _ref("Patient", patient_fhir_id(patient_id)),
    }
    if model:
        out["deviceName"] = [{"name": text(model), "type": "model-name"}]
    specs = specializations(mdcs)
    if specs:
        out["specialization"] = [{"systemType": metric_code(s), "version": "1"} for s in specs]
    return out


def gateway_device(hub_id: str) -> Resource:
    return {
        "resourceType": "Device",
        "id": gateway_device_id(hub_id),
        "meta": {"profile": [PROFILE_GATEWAY]},
        "identifier": [identifier(HUB_SYSTEM, hub_id)],
        "status": "active",
        "deviceName": [{"name": text(hub_id), "type": "user-friendly-name"}],
    }


def observation_codes(token: str) -> tuple[set[int], set[str]] | None:
    """What a ``code`` search token (``[system|]code``) matches: Observation-level MDC codes and
    stored LOINC codes; None when the token's system is neither MDC nor LOINC."""
    system, sep, code = token.rpartition("|")
    if not sep:
        system = ""
    if system not in ("", MDC_SYSTEM, LOINC_SYSTEM):
        return None
    mdcs: set[int] = set()
    loincs: set[str] = set()
    if system in ("", MDC_SYSTEM) and code.isdigit() and len(code) <= 10:
        mdcs.add(int(code))
    if system in ("", LOINC_SYSTEM) and code:
        loincs.add(code)
        mdcs |= {mdc for mdc, lcs in codes.LOINC.items() if code in lcs}
    return mdcs, loincs
