"""The fleet: organisations, API tokens, patients and their care teams, hubs, device bindings,
alert rules and webhooks — loadable from TOML and applied to the database idempotently.

Example (``fleet.toml``)::

    [[orgs]]
    id = "rh"
    name = "Rigshospitalet"
    kind = "hospital"            # hospital | gp | municipality | operator

    [[tokens]]
    token = "change-me-long-random"   # given in clear; stored as sha256; >= 20 characters
    expires = 2027-01-01T00:00:00Z     # optional
    org = "rh"
    clinician = "Dr. Hansen"
    role = "clinician"           # clinician | operator

    [[patients]]
    id = "p-001"
    display_name = "Test Patient"
    orgs = ["rh"]                # the organisations that follow this patient
    timezone = "Europe/Copenhagen"   # IANA zone of the patient's local days (the default)
    programmes = ["heart_failure"]   # activates the programme's rule templates (docs/alerting.md)
    programmes_from = 2026-01-01T00:00:00Z   # optional; default: when the file is first applied

    [[hubs]]
    id = "hub-001"               # also an MQTT topic segment: no '/', '+', '#'
    org = "rh"                   # optional

    [[devices]]
    id = "00:1C:05:AA:BB:CC"
    hub = "hub-001"
    patient = "p-001"
    model = "Nonin 3230"

    [[rules]]
    key = "spo2-low"             # identity of the rule for re-applying the file
    patient = "p-001"
    mdc = 150456
    op = "<"
    threshold = 90               # number or decimal string
    unit = "%"
    severity = "critical"        # info | warning | critical
    description = "SpO2 below 90 %"

    [[webhooks]]
    org = "rh"
    url = "https://example.org/telehub-hook"
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"   # Standard Webhooks key (base64)

    [[emails]]                   # reached when the org's webhooks fail, or it has none
    org = "rh"
    address = "alerts@rh.example.org"

:func:`apply_fleet` upserts everything in one transaction. It never deletes organisations,
patients, hubs or devices that the file does not list. For each patient the file lists, the
file is authoritative for that patient's care relations (``care_relations`` rows of other orgs
are removed; ``orgs`` and ``relations`` list them) and for the patient's fleet-declared rules
(rules with a ``rule_key`` the file no longer lists are disabled, not deleted, because alerts
refer to them; rules created elsewhere without a ``rule_key`` are left alone). Consents are not
in the file: they are the patient's, recorded through the API (docs/security.md). The file is
authoritative for API tokens: a token it no longer lists is revoked (the row is kept with
``revoked_at``); listing it again reinstates it.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway import catalog
from gateway.alerting import codec
from gateway.alerting.calendar import CalendarKind
from gateway.alerting.escalation import EscalateWhen, Policy, Step
from gateway.alerting.model import AlertLevel, MissingParams, Slot
from gateway.alerting.templates import Programme, activate, missing_rule

_ID = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class FleetError(ValueError):
    """The fleet description is invalid; the message lists every problem with its location."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Org(_Model):
    id: _ID
    name: StrictStr
    kind: Literal["hospital", "gp", "municipality", "operator"]
    sor: StrictStr | None = Field(default=None, pattern=r"^[0-9]{1,20}$")  # SOR id (OIDC claim)


#: Shortest API token a fleet file may declare (a guessable token is no authentication).
MIN_TOKEN_LENGTH: Final = 20


class Token(_Model):
    token: StrictStr = Field(repr=False)
    org: _ID
    clinician: StrictStr | None = None
    #: ``portal``: a citizen portal's machine client (tokens of an ``operator`` organisation only)
    role: Literal["clinician", "operator", "portal"] = "clinician"
    expires: AwareDatetime | None = None  # None: does not expire

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: str) -> str:
        # the message never includes the token itself
        if len(v) < MIN_TOKEN_LENGTH:
            raise ValueError(f"a token must have at least {MIN_TOKEN_LENGTH} characters")
        if v != v.strip() or any(c.isspace() or not c.isprintable() for c in v):
            raise ValueError("a token must be printable characters without whitespace")
        return v

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.token.encode()).digest()


class CareRelation(_Model):
    """An organisation following a patient (``care_relations``, docs/security.md): ``orgs``
    entries are the shorthand for a treating relation with no end."""

    org: _ID
    care_team: StrictStr | None = None
    relation: Literal["treating", "follow-up", "home-care", "shared-care"] = "treating"
    #: ``consent``: access only while the patient's sharing consent is in force (recorded
    #: through the API); ``treatment``: the relation itself is the basis
    legal_basis: Literal["treatment", "consent"] = "treatment"
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class PlanSlot(_Model):
    start: time  # patient-local wall-clock time ("07:00")
    deadline: time
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = [0, 1, 2, 3, 4, 5, 6]  # 0 = Monday


class PlanItem(_Model):
    """One metric of a patient's measurement plan (A1, docs/alerting.md): the blue alert when
    a slot passes without a valid reading. A change in the file is a new rule version."""

    metric: StrictInt  # MDC code, e.g. 188736 (body weight)
    slots: list[PlanSlot] = Field(min_length=1, max_length=24)
    grace_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 60

    def params(self) -> MissingParams:
        try:
            slots = tuple(Slot(s.start, s.deadline, frozenset(s.weekdays)) for s in self.slots)
        except ValueError as exc:
            raise ValueError(f"plan for metric {self.metric}: {exc}") from None
        return MissingParams(slots, timedelta(minutes=self.grace_minutes))

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if catalog.metric(self.metric) is None:
            raise ValueError(f"plan metric {self.metric} is not a metric telehub knows")
        self.params()
        return self


class EscalationStepIn(_Model):
    after_minutes: Annotated[int, Field(ge=1, le=60 * 24 * 60)]  # of calendar time
    when: Literal["not_acknowledged", "not_resolved"] = "not_acknowledged"
    notify: Annotated[StrictStr, Field(min_length=1, max_length=200)]  # whom


class EscalationIn(_Model):
    """The escalation policy of one alert level (docs/alerting.md): steps on a calendar."""

    level: Literal["red", "yellow", "blue", "info"]
    calendar: Literal["working_hours", "working_days", "always"] = "working_days"
    steps: list[EscalationStepIn] = Field(min_length=1, max_length=20)

    def policy(self) -> Policy:
        return Policy(
            AlertLevel(self.level),
            CalendarKind(self.calendar),
            tuple(Step(timedelta(minutes=s.after_minutes), EscalateWhen(s.when), s.notify)
                  for s in self.steps),
        )  # fmt: skip

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.policy()
        return self


class Patient(_Model):
    id: _ID
    display_name: StrictStr | None = None
    orgs: list[_ID] = []
    relations: list[CareRelation] = []
    #: IANA time zone of the patient's local days (docs/alerting.md)
    timezone: StrictStr = "Europe/Copenhagen"
    #: clinical programmes whose rule templates are activated for this patient (version 1 of
    #: each rule, from ``programmes_from``); never a silent default
    programmes: list[Programme] = []
    programmes_from: datetime | None = None
    #: measurement plan: A1 blue alerts for slots that pass without a valid reading
    plan: list[PlanItem] = []

    def care_relations(self) -> list[CareRelation]:
        """``relations`` plus a treating relation for each ``orgs`` entry not among them."""
        declared = {r.org for r in self.relations}
        return [*self.relations, *(CareRelation(org=o) for o in self.orgs if o not in declared)]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class Hub(_Model):
    id: _ID
    org: _ID | None = None

    @field_validator("id")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        bad = set(v) & {"/", "+", "#", " ", "\t", "\n"}
        if bad:
            raise ValueError(f"hub id {v!r} contains {sorted(bad)} (it is an MQTT topic segment)")
        return v


class Device(_Model):
    id: _ID
    hub: _ID
    patient: _ID
    model: StrictStr | None = None


class Rule(_Model):
    key: _ID | None = None  # default: derived from mdc/op/threshold/unit
    patient: _ID
    mdc: StrictInt
    op: Literal["<", "<=", ">", ">="]
    threshold: Decimal
    unit: StrictStr
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: StrictBool = True
    description: StrictStr | None = None

    @field_validator("threshold", mode="before")
    @classmethod
    def _decimal(cls, v: Any) -> Decimal:
        if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
            raise ValueError("threshold must be a number or a decimal string")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise ValueError(f"threshold {v!r} is not a decimal number") from None
        if not d.is_finite():
            raise ValueError("threshold must be finite")
        return d

    @model_validator(mode="after")
    def _known_metric_and_unit(self) -> Self:
        m = catalog.metric(self.mdc)
        if m is None:
            raise ValueError(f"mdc {self.mdc} is not a metric the gateway accepts")
        if catalog.mdc_unit_code(self.unit) is None or not catalog.accepts_unit(m, self.unit):
            raise ValueError(
                f"unit {self.unit!r} is not a unit of MDC {self.mdc} ({m.name}: {list(m.units)})"
            )
        return self

    @property
    def rule_key(self) -> str:
        return self.key or f"{self.mdc}{self.op}{self.threshold}{self.unit}"


class Webhook(_Model):
    org: _ID
    url: StrictStr = Field(pattern=r"^https?://\S+$")
    secret: StrictStr | None = Field(default=None, repr=False)


class Email(_Model):
    """An organisation's alert mailbox: reached when its webhooks fail or it has none."""

    org: _ID
    address: StrictStr = Field(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$", max_length=254)


class Fleet(_Model):
    orgs: list[Org] = []
    tokens: list[Token] = []
    patients: list[Patient] = []
    hubs: list[Hub] = []
    devices: list[Device] = []
    rules: list[Rule] = []
    webhooks: list[Webhook] = []
    emails: list[Email] = []
    #: escalation policies per alert level; the file is authoritative (none listed: none)
    escalations: list[EscalationIn] = []

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems: list[str] = []

        def dupes(kind: str, keys: list[Any]) -> None:
            for k, n in Counter(keys).items():
                if n > 1:
                    problems.append(f"{kind}: {k!r} is declared {n} times")

        dupes("orgs", [o.id for o in self.orgs])
        dupes("patients", [p.id for p in self.patients])
        dupes("hubs", [h.id for h in self.hubs])
        dupes("devices", [(d.hub, d.id) for d in self.devices])
        dupes("emails", [(e.org, e.address) for e in self.emails])
        dupes("rules", [(r.patient, r.rule_key) for r in self.rules])
        dupes("webhooks", [(w.org, w.url) for w in self.webhooks])
        dupes("escalations", [e.level for e in self.escalations])
        dupes("tokens", [t.sha256.hex()[:12] for t in self.tokens])
        orgs = {o.id for o in self.orgs}
        patients = {p.id for p in self.patients}
        hubs = {h.id for h in self.hubs}
        kinds = {o.id: o.kind for o in self.orgs}
        for i, t in enumerate(self.tokens):
            if t.org not in orgs:
                problems.append(f"tokens[{i}].org: unknown org {t.org!r}")
            elif t.role == "portal" and kinds[t.org] != "operator":
                problems.append(f"tokens[{i}].role: a portal token belongs to an operator org")
        for i, p in enumerate(self.patients):
            for o in p.orgs:
                if o not in orgs:
                    problems.append(f"patients[{i}].orgs: unknown org {o!r}")
            for j, rel in enumerate(p.relations):
                if rel.org not in orgs:
                    problems.append(f"patients[{i}].relations[{j}].org: unknown org {rel.org!r}")
            dupes(f"patients[{i}].relations", [rel.org for rel in p.relations])
        for i, h in enumerate(self.hubs):
            if h.org is not None and h.org not in orgs:
                problems.append(f"hubs[{i}].org: unknown org {h.org!r}")
        for i, d in enumerate(self.devices):
            if d.hub not in hubs:
                problems.append(f"devices[{i}].hub: unknown hub {d.hub!r}")
            if d.patient not in patients:
                problems.append(f"devices[{i}].patient: unknown patient {d.patient!r}")
        for i, r in enumerate(self.rules):
            if r.patient not in patients:
                problems.append(f"rules[{i}].patient: unknown patient {r.patient!r}")
        for i, w in enumerate(self.webhooks):
            if w.org not in orgs:
                problems.append(f"webhooks[{i}].org: unknown org {w.org!r}")
        for i, e in enumerate(self.emails):
            if e.org not in orgs:
                problems.append(f"emails[{i}].org: unknown org {e.org!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fleet:
        """Validate a plain mapping (as parsed from TOML); raises FleetError."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise FleetError(_describe(exc)) from None

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<fleet>") -> Fleet:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FleetError(f"{source}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except FleetError as exc:
            raise FleetError(f"{source}: {exc}") from None


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet TOML file; raises FleetError (also for an unreadable file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"{p}: cannot read: {exc}") from None
    return Fleet.from_toml(text, source=str(p))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid fleet: " + "; ".join(parts)


# -- applying -------------------------------------------------------------------------------------
Statement = tuple[str, tuple[Any, ...] | dict[str, Any]]


def fleet_statements(fleet: Fleet) -> list[Statement]:
    """The idempotent SQL that makes the database match ``fleet`` (see the module docstring)."""
    out: list[Statement] = []
    for o in fleet.orgs:
        out.append(
            (
                "INSERT INTO orgs (org_id, name, kind, sor_id) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (org_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
                "sor_id = EXCLUDED.sor_id",
                (o.id, o.name, o.kind, o.sor),
            )
        )
    # a token the fleet no longer declares is revoked (kept for the audit trail)
    out.append(
        (
            "UPDATE api_tokens SET revoked_at = now() "
            "WHERE revoked_at IS NULL AND NOT token_sha256 = ANY(%s)",
            ([t.sha256 for t in fleet.tokens],),
        )
    )
    for t in fleet.tokens:
        out.append(
            (
                "INSERT INTO api_tokens (token_sha256, org_id, clinician, role, expires_at) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (token_sha256) DO UPDATE SET org_id = EXCLUDED.org_id, "
                "clinician = EXCLUDED.clinician, role = EXCLUDED.role, "
                "expires_at = EXCLUDED.expires_at, revoked_at = NULL",
                (t.sha256, t.org, t.clinician, t.role, t.expires),
            )
        )
    for p in fleet.patients:
        out.append(
            (
                "INSERT INTO patients (patient_id, display_name, timezone) VALUES (%s, %s, %s) "
                "ON CONFLICT (patient_id) DO UPDATE SET display_name = EXCLUDED.display_name, "
                "timezone = EXCLUDED.timezone",
                (p.id, p.display_name, p.timezone),
            )
        )
        for programme in p.programmes:
            for v in activate(programme, p.programmes_from or datetime.now(UTC), "fleet"):
                out.append((
                    "INSERT INTO alert_rule_versions (patient_id, rule_code, version, programme, "
                    "effective_from, definition, enabled, author, reason) "
                    "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM "
                    "alert_rule_versions WHERE patient_id = %s AND rule_code = %s)",
                    (p.id, v.rule_id, v.version, programme.value, v.effective_from,
                     json.dumps(codec.encode(v)), v.enabled, v.author, v.reason, p.id, v.rule_id),
                ))  # fmt: skip
        for item in p.plan:
            m = catalog.metric(item.metric)
            v = missing_rule(item.metric, item.params(), name=m.name if m else str(item.metric),
                             effective_from=p.programmes_from or datetime.now(UTC),
                             author="fleet")  # fmt: skip
            # a new version only when the plan in the file differs from the newest one
            out.append((
                "INSERT INTO alert_rule_versions (patient_id, rule_code, version, programme, "
                "effective_from, definition, enabled, author, reason) "
                "SELECT %(p)s, %(code)s, coalesce(max(version), 0) + 1, NULL, "
                "CASE WHEN max(version) IS NULL THEN %(first)s ELSE now() END, %(def)s::jsonb, "
                "true, 'fleet', CASE WHEN max(version) IS NULL THEN 'measurement plan' "
                "ELSE 'measurement plan changed in the fleet file' END "
                "FROM alert_rule_versions WHERE patient_id = %(p)s AND rule_code = %(code)s "
                "HAVING coalesce((array_agg(definition ORDER BY version DESC))[1] "
                "<> %(def)s::jsonb, true)",
                {"p": p.id, "code": v.rule_id, "first": v.effective_from,
                 "def": json.dumps(codec.encode(v))},
            ))  # fmt: skip
        relations = p.care_relations()
        out.append(
            (
                "DELETE FROM care_relations WHERE patient_id = %s AND NOT org_id = ANY(%s)",
                (p.id, [rel.org for rel in relations]),
            )
        )
        for rel in relations:
            out.append(
                (
                    "INSERT INTO care_relations (patient_id, org_id, care_team, relation, "
                    "legal_basis, valid_from, valid_to) VALUES (%s, %s, %s, %s, %s, "
                    "coalesce(%s, '-infinity'::timestamptz), %s) ON CONFLICT (patient_id, org_id) "
                    "DO UPDATE SET care_team = EXCLUDED.care_team, relation = EXCLUDED.relation, "
                    "legal_basis = EXCLUDED.legal_basis, valid_from = EXCLUDED.valid_from, "
                    "valid_to = EXCLUDED.valid_to",
                    (
                        p.id,
                        rel.org,
                        rel.care_team,
                        rel.relation,
                        rel.legal_basis,
                        rel.valid_from,
                        rel.valid_to,
                    ),
                )
            )
    for h in fleet.hubs:
        out.append(
            (
                "INSERT INTO hubs (hub_id, org_id) VALUES (%s, %s) "
                "ON CONFLICT (hub_id) DO UPDATE SET org_id = EXCLUDED.org_id",
                (h.id, h.org),
            )
        )
    for d in fleet.devices:
        out.append(
            (
                "INSERT INTO devices (hub_id, device_id, patient_id, model) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (hub_id, device_id) DO UPDATE SET "
                "patient_id = EXCLUDED.patient_id, "
                "model = EXCLUDED.model",
                (d.hub, d.id, d.patient, d.model),
            )
        )
    for p in fleet.patients:
        keys = [r.rule_key for r in fleet.rules if r.patient == p.id]
        out.append(
            (
                "UPDATE rules SET enabled = false WHERE patient_id = %s AND rule_key IS NOT NULL "
                "AND NOT rule_key = ANY(%s) AND enabled",
                (p.id, keys),
            )
        )
    for r in fleet.rules:
        out.append((
            "INSERT INTO rules (patient_id, rule_key, mdc, op, threshold, unit, severity, enabled, "
            "description) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (patient_id, rule_key) DO UPDATE SET mdc = EXCLUDED.mdc, "
            "op = EXCLUDED.op, threshold = EXCLUDED.threshold, unit = EXCLUDED.unit, "
            "severity = EXCLUDED.severity, enabled = EXCLUDED.enabled, "
            "description = EXCLUDED.description",
            (r.patient, r.rule_key, r.mdc, r.op, r.threshold, r.unit, r.severity, r.enabled,
             r.description),
        ))  # fmt: skip
    out.append((
        "DELETE FROM escalation_policies WHERE NOT level = ANY(%s)",
        ([esc.level for esc in fleet.escalations],),
    ))  # fmt: skip
    for esc in fleet.escalations:
        out.append((
            "INSERT INTO escalation_policies (level, policy) VALUES (%s, %s) ON CONFLICT (level) "
            "DO UPDATE SET policy = EXCLUDED.policy, updated_at = now() "
            "WHERE escalation_policies.policy <> EXCLUDED.policy",
            (esc.level, json.dumps(esc.policy().encode())),
        ))  # fmt: skip
    for w in fleet.webhooks:
        out.append(
            (
                "INSERT INTO webhooks (org_id, url, secret) VALUES (%s, %s, %s) "
                "ON CONFLICT (org_id, url) DO UPDATE SET secret = EXCLUDED.secret",
                (w.org, w.url, w.secret),
            )
        )
    for e in fleet.emails:
        out.append(
            (
                "INSERT INTO email_recipients (org_id, address) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (e.org, e.address),
            )
        )
    return out


def apply_fleet(conn: psycopg.Connection[Any], fleet: Fleet) -> None:
    """Upsert ``fleet`` in one transaction (idempotent)."""
    with conn.transaction():
        for sql, params in fleet_statements(fleet):
            conn.execute(sql.encode(), params)


async def apply_fleet_async(conn: psycopg.AsyncConnection[Any], fleet: Fleet) -> None:
    """:func:`apply_fleet` for an async connection."""
    async with conn.transaction():
        for sql, params in fleet_statements(fleet):
            await conn.execute(sql.encode(), params)
