"""Care relations and consent (migration 94): who may see a patient, evaluated on every read.

An organisation sees a patient through a **care relation** (``care_relations``: organisation,
care team, kind of relation, validity, legal basis) — until migration 94 the bare
``patient_access`` table, renamed. Whether the relation gives access *now* is decided by the
relation's validity and the patient's **consents** (``consents``):

* ``refusal`` — the patient refuses lookups (sundhedsloven §42 a) by one organisation, by a
  sector (``hospital``, ``gp``, ``municipality``) or by everybody; in force from ``valid_from``
  until ``valid_to`` or its withdrawal. A refusal in force always wins.
* ``sharing`` — the patient consents to sharing with an organisation or sector (§41). A
  relation whose legal basis is ``consent`` (e.g. a municipality's home care following a
  hospital's patient) gives access only while such a consent is in force; one whose basis is
  ``treatment`` needs none.

``patient_access`` is now a view of the relations that give access at ``now()``: every query
that scoped by it before (the API, FHIR, the SSE streams, alert fan-out, the delivery worker's
re-check before each attempt) applies consent at its next statement without a change. One
function answers the same question for a given time: ``telehub_may_access(org, patient, at)``.
Consent rows are never deleted: a withdrawal sets ``withdrawn_at``/``withdrawn_by``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode

SECTORS: Final = ("hospital", "gp", "municipality")
RELATIONS: Final = ("treating", "follow-up", "home-care", "shared-care")
LEGAL_BASES: Final = ("treatment", "consent")
CONSENT_KINDS: Final = ("refusal", "sharing")
PURPOSES: Final = ("treatment",)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


#: a consent row ``c`` in force at ``{at}`` that covers organisation ``{org}`` (kind ``{kind}``)
_COVERS: Final = """
    c.patient_id = {patient} AND c.kind = '{kind}' AND c.withdrawn_at IS NULL
    AND c.valid_from <= {at} AND (c.valid_to IS NULL OR c.valid_to > {at})
    AND (c.org_id = {org} OR c.sector = (SELECT o.kind FROM orgs o WHERE o.org_id = {org})
         OR (c.org_id IS NULL AND c.sector IS NULL))"""


def _gives_access(at: str, relation: str = "cr") -> str:
    """The SQL condition under which care relation ``relation`` gives access at ``at``."""
    refs = {"patient": f"{relation}.patient_id", "org": f"{relation}.org_id", "at": at}
    return f"""{relation}.valid_from <= {at}
        AND ({relation}.valid_to IS NULL OR {relation}.valid_to > {at})
        AND ({relation}.legal_basis = 'treatment' OR EXISTS (
            SELECT 1 FROM consents c WHERE {_COVERS.format(kind="sharing", **refs)}))
        AND NOT EXISTS (
            SELECT 1 FROM consents c WHERE {_COVERS.format(kind="refusal", **refs)})"""


def v94(_mode: StorageMode) -> list[str]:
    return [
        "ALTER TABLE IF EXISTS patient_access RENAME TO care_relations",
        "ALTER INDEX IF EXISTS patient_access_org RENAME TO care_relations_org",
        "ALTER TABLE care_relations "
        "ADD COLUMN IF NOT EXISTS care_team text NULL, "
        "ADD COLUMN IF NOT EXISTS relation text NOT NULL DEFAULT 'treating', "
        "ADD COLUMN IF NOT EXISTS legal_basis text NOT NULL DEFAULT 'treatment', "
        "ADD COLUMN IF NOT EXISTS valid_from timestamptz NOT NULL DEFAULT '-infinity', "
        "ADD COLUMN IF NOT EXISTS valid_to timestamptz NULL",
        f"ALTER TABLE care_relations ADD CONSTRAINT care_relations_relation "
        f"CHECK (relation IN ({_in(RELATIONS)}))",
        f"ALTER TABLE care_relations ADD CONSTRAINT care_relations_legal_basis "
        f"CHECK (legal_basis IN ({_in(LEGAL_BASES)}))",
        "ALTER TABLE care_relations ADD CONSTRAINT care_relations_validity "
        "CHECK (valid_to IS NULL OR valid_to > valid_from)",
        f"""
        CREATE TABLE IF NOT EXISTS consents (
            consent_id bigserial PRIMARY KEY,
            patient_id text NOT NULL REFERENCES patients (patient_id) ON DELETE CASCADE,
            kind text NOT NULL CHECK (kind IN ({_in(CONSENT_KINDS)})),
            org_id text NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
            sector text NULL CHECK (sector IN ({_in(SECTORS)})),
            purpose text NOT NULL DEFAULT 'treatment' CHECK (purpose IN ({_in(PURPOSES)})),
            valid_from timestamptz NOT NULL DEFAULT now(),
            valid_to timestamptz NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            recorded_by text NOT NULL CHECK (recorded_by <> ''),
            recorded_org text NOT NULL REFERENCES orgs (org_id),
            note text NULL,
            withdrawn_at timestamptz NULL,
            withdrawn_by text NULL,
            CHECK (org_id IS NULL OR sector IS NULL),
            CHECK (valid_to IS NULL OR valid_to > valid_from),
            CHECK ((withdrawn_at IS NULL) = (withdrawn_by IS NULL))
        )""",
        "CREATE INDEX IF NOT EXISTS consents_patient ON consents (patient_id, kind)",
        f"""
        CREATE OR REPLACE VIEW patient_access AS
        SELECT cr.patient_id, cr.org_id FROM care_relations cr
        WHERE {_gives_access("now()")}""",
        f"""
        CREATE OR REPLACE FUNCTION telehub_may_access(
            p_org text, p_patient text, p_at timestamptz DEFAULT now()
        ) RETURNS boolean LANGUAGE sql STABLE AS $fn$
            SELECT EXISTS (SELECT 1 FROM care_relations cr
                           WHERE cr.org_id = p_org AND cr.patient_id = p_patient
                             AND {_gives_access("p_at")})
        $fn$""",
        # the portal role (a citizen portal reading "who looked at my data")
        "ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check",
        "ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check "
        "CHECK (role IN ('clinician', 'operator', 'portal'))",
    ]
