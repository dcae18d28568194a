"""Least privilege in PostgreSQL (migration 98): app roles, row-level security, visible readings.

Three kinds of connection reach the database (``docs/security.md``):

* the **owner** (the ``database_url`` role) runs migrations and the plain-PostgreSQL lifecycle
  job (aggregate refresh and retention need ownership). It owns every object.
* ``telehub_api`` — the API. ``NOSUPERUSER NOBYPASSRLS``, owns nothing. Every request runs in
  one transaction that first sets ``telehub.org`` (and ``telehub.actor``, ``telehub.role``) with
  ``set_config(…, true)``: the setting ends with the transaction, so a pooled connection never
  carries one caller's scope into the next. It can never take a system context.
* ``telehub_ingest`` — the ingester and the background workers (deliveries, webhooks, sweeps,
  FHIR push, the live stream's fan-out). ``NOSUPERUSER NOBYPASSRLS``, owns nothing. It works in
  an explicit **system context** (``telehub.system`` = its purpose), which is recorded in
  ``system_contexts`` (purpose, role, backend pid, client address, time) when it is entered;
  the app roles may only insert there.

Every tenant-scoped table has RLS **enabled and forced** (the owner is bound too) with one
fail-closed policy. A policy first asks ``telehub_ctx_system()``, which *raises*
(``42501 insufficient_privilege``) when the transaction has no context at all: background work
without a context fails loudly instead of answering "0 rows". With an organisation context
only the rows of that organisation's patients (``patient_access``: care relation and consent),
hubs or own rows pass; inserts and updates are checked by the same expression.

Readings are a (TimescaleDB) hypertable whose compression does not combine with RLS, so the API
role may not read ``readings`` or the aggregates at all: it reads ``visible_readings``,
``visible_readings_daily`` and ``visible_readings_hourly``, security-barrier views that apply
the same patient check.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode


class AppRole(StrEnum):
    """The database roles the services log in as (cluster-wide names)."""

    API = "telehub_api"
    INGEST = "telehub_ingest"


class Scope(StrEnum):
    """How a tenant-scoped table decides which rows an organisation context sees."""

    PATIENT = "patient"  # rows of the patients the organisation follows now
    ORG = "org"  # the organisation's own rows
    HUB = "hub"  # rows of the organisation's hubs
    ALERT = "alert"  # rows of the visible clinical alerts
    SYSTEM = "system"  # background work only


_SYS: Final = "(SELECT telehub_ctx_system())"
_ORG: Final = "(SELECT telehub_ctx_org())"
_PORTAL: Final = "(SELECT telehub_ctx_role()) = 'portal'"
_PLATFORM: Final = "(SELECT telehub_ctx_platform())"
_SEES_PATIENT: Final = (
    f"patient_id IN (SELECT pa.patient_id FROM patient_access pa WHERE pa.org_id = {_ORG})"
)
_OWN_HUB: Final = "hub_id IN (SELECT h.hub_id FROM hubs h)"

#: every tenant-scoped table and its policy's condition after "system context, or …"
TENANT_TABLES: Final[dict[str, tuple[Scope, str]]] = {
    "patients": (Scope.PATIENT, f"{_SEES_PATIENT} OR {_PORTAL}"),
    # no patient_access here: the view reads these two (a policy must not recurse)
    "care_relations": (Scope.ORG, f"org_id = {_ORG} OR {_PORTAL}"),
    "consents": (
        Scope.PATIENT,
        f"org_id = {_ORG} OR {_PORTAL} OR patient_id IN "
        f"(SELECT cr.patient_id FROM care_relations cr WHERE cr.org_id = {_ORG})",
    ),
    "clinical_alerts": (Scope.PATIENT, _SEES_PATIENT),
    "alert_occurrences": (Scope.PATIENT, _SEES_PATIENT),
    "alert_event": (Scope.PATIENT, _SEES_PATIENT),
    "alerts": (Scope.PATIENT, _SEES_PATIENT),
    "adherence_slots": (Scope.PATIENT, _SEES_PATIENT),
    "alert_rule_versions": (Scope.PATIENT, _SEES_PATIENT),
    "rules": (Scope.PATIENT, _SEES_PATIENT),
    "patient_suppressions": (Scope.PATIENT, _SEES_PATIENT),
    "reading_versions": (Scope.PATIENT, _SEES_PATIENT),
    "alert_escalations": (
        Scope.ALERT,
        "alert_id IN (SELECT ca.alert_id FROM clinical_alerts ca)",
    ),
    "alert_escalation_policy": (
        Scope.ALERT,
        "alert_id IN (SELECT ca.alert_id FROM clinical_alerts ca)",
    ),
    "event_deliveries": (Scope.ORG, f"org_id = {_ORG}"),
    "alert_deliveries": (
        Scope.ORG,
        f"webhook_id IN (SELECT w.webhook_id FROM webhooks w WHERE w.org_id = {_ORG})",
    ),
    "api_tokens": (Scope.ORG, f"org_id = {_ORG}"),
    "webhooks": (Scope.ORG, f"org_id = {_ORG}"),
    "email_recipients": (Scope.ORG, f"org_id = {_ORG}"),
    "hubs": (Scope.ORG, f"org_id = {_ORG} OR (org_id IS NULL AND {_PLATFORM})"),
    "devices": (Scope.HUB, f"{_OWN_HUB} OR {_SEES_PATIENT}"),
    "dead_letters": (
        Scope.HUB,
        f"{_OWN_HUB} OR ({_PLATFORM} AND telehub_hub_owner(hub_id) IS NULL)",
    ),
    "held_records": (Scope.HUB, _OWN_HUB),
    "technical_alerts": (Scope.HUB, _OWN_HUB),
    "fhir_outbox": (Scope.SYSTEM, "false"),
}

#: audit_events: the app roles may only insert, and only as their own organisation
AUDIT_TABLE: Final = "audit_events"

#: what the API may read that is not tenant-scoped
API_READ_ONLY: Final = (
    "orgs",
    "patient_access",
    "escalation_policies",
    "telehub_retention",
)

VISIBLE_VIEWS: Final = {
    "visible_readings": "readings",
    "visible_readings_daily": "readings_daily",
    "visible_readings_hourly": "readings_hourly",
}

_NO_CONTEXT: Final = (
    "telehub: no access context in this transaction (telehub.org or telehub.system)"
)


def _create_role(role: AppRole) -> str:
    # roles are cluster-wide: another database of the cluster may have created it already
    return f"""
    DO $do$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $do$"""


_FUNCTIONS: Final = [
    f"""
    CREATE OR REPLACE FUNCTION telehub_ctx_system() RETURNS boolean
    LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
        sys text := coalesce(current_setting('telehub.system', true), '');
        org text := coalesce(current_setting('telehub.org', true), '');
    BEGIN
        IF sys <> '' THEN
            IF current_user::text = '{AppRole.API}' THEN
                RAISE EXCEPTION 'telehub: the API role cannot take a system context'
                    USING ERRCODE = '42501';
            END IF;
            RETURN true;
        END IF;
        IF org <> '' THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION '{_NO_CONTEXT}' USING ERRCODE = '42501';
    END $fn$""",
    """
    CREATE OR REPLACE FUNCTION telehub_ctx_org() RETURNS text LANGUAGE sql STABLE AS $fn$
        SELECT nullif(current_setting('telehub.org', true), '')
    $fn$""",
    """
    CREATE OR REPLACE FUNCTION telehub_ctx_role() RETURNS text LANGUAGE sql STABLE AS $fn$
        SELECT coalesce(nullif(current_setting('telehub.role', true), ''), '-')
    $fn$""",
    """
    CREATE OR REPLACE FUNCTION telehub_ctx_platform() RETURNS boolean
    LANGUAGE sql STABLE AS $fn$
        SELECT coalesce(current_setting('telehub.role', true), '') = 'operator'
           AND EXISTS (SELECT 1 FROM orgs o
                       WHERE o.org_id = telehub_ctx_org() AND o.kind = 'operator')
    $fn$""",
    # an API token's principal, looked up before any organisation is known
    """
    CREATE OR REPLACE FUNCTION telehub_token_principal(p_sha256 bytea)
    RETURNS TABLE (org_id text, clinician text, role text, kind text, dead boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    SET telehub.system = 'authenticate' AS $fn$
        SELECT t.org_id, t.clinician, t.role, o.kind,
               t.revoked_at IS NOT NULL OR (t.expires_at IS NOT NULL AND t.expires_at <= now())
        FROM api_tokens t JOIN orgs o USING (org_id) WHERE t.token_sha256 = p_sha256
    $fn$""",
    # whether a patient exists at all (a refused lookup is audited against the patient)
    """
    CREATE OR REPLACE FUNCTION telehub_patient_exists(p_patient text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    SET telehub.system = 'audit-denied-lookup' AS $fn$
        SELECT EXISTS (SELECT 1 FROM patients WHERE patient_id = p_patient)
    $fn$""",
    # the organisation owning a hub (NULL: nobody, or no such hub) for the platform operator
    """
    CREATE OR REPLACE FUNCTION telehub_hub_owner(p_hub text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    SET telehub.system = 'hub-owner' AS $fn$
        SELECT org_id FROM hubs WHERE hub_id = p_hub
    $fn$""",
    # whose alert a refused alert lookup was about (audited against that patient)
    """
    CREATE OR REPLACE FUNCTION telehub_alert_patient(p_alert bigint, p_clinical boolean)
    RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    SET telehub.system = 'audit-denied-lookup' AS $fn$
        SELECT CASE WHEN p_clinical
                    THEN (SELECT patient_id FROM clinical_alerts WHERE alert_id = p_alert)
                    ELSE (SELECT patient_id FROM alerts WHERE alert_id = p_alert) END
    $fn$""",
    # the citizen portal's "who looked at my data" (the app roles cannot select audit rows)
    """
    CREATE OR REPLACE FUNCTION telehub_access_log(
        p_patient text, p_since timestamptz, p_until timestamptz, p_limit integer
    ) RETURNS SETOF audit_events
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    SET telehub.system = 'access-log' AS $fn$
    BEGIN
        IF telehub_ctx_role() <> 'portal' THEN
            RAISE EXCEPTION 'telehub: the access log is for the citizen portal'
                USING ERRCODE = '42501';
        END IF;
        RETURN QUERY SELECT * FROM audit_events a
            WHERE a.patient_id = p_patient AND a.at >= p_since AND a.at < p_until
            ORDER BY a.at DESC, a.id DESC LIMIT p_limit;
    END $fn$""",
]


def _policy(table: str, condition: str) -> list[str]:
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS telehub_scope ON {table}",
        f"CREATE POLICY telehub_scope ON {table} USING ({_SYS} OR {condition})",
    ]


def _audit_policies() -> list[str]:
    return [
        f"ALTER TABLE {AUDIT_TABLE} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {AUDIT_TABLE} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS telehub_insert ON {AUDIT_TABLE}",
        f"CREATE POLICY telehub_insert ON {AUDIT_TABLE} FOR INSERT "
        f"WITH CHECK ({_SYS} OR org_id = {_ORG})",
        f"DROP POLICY IF EXISTS telehub_read ON {AUDIT_TABLE}",
        f"CREATE POLICY telehub_read ON {AUDIT_TABLE} FOR SELECT USING ({_SYS} OR {_PORTAL})",
        f"DROP POLICY IF EXISTS telehub_delete ON {AUDIT_TABLE}",
        f"CREATE POLICY telehub_delete ON {AUDIT_TABLE} FOR DELETE USING ({_SYS})",
    ]


def _views() -> list[str]:
    out = []
    for view, source in VISIBLE_VIEWS.items():
        out.append(
            f"""CREATE OR REPLACE VIEW {view} WITH (security_barrier) AS
            SELECT s.* FROM {source} s
            WHERE {_SYS} OR s.patient_id IN (
                SELECT pa.patient_id FROM patient_access pa WHERE pa.org_id = {_ORG})"""
        )
    return out


def _grants() -> list[str]:
    api, ingest = AppRole.API, AppRole.INGEST
    tenant = ", ".join(t for t, (scope, _) in TENANT_TABLES.items() if scope != Scope.SYSTEM)
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {api}, {ingest}",
        f"GRANT USAGE ON SCHEMA public TO {api}, {ingest}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {api}, {ingest}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tenant} TO {api}",
        f"GRANT SELECT ON {', '.join(API_READ_ONLY)} TO {api}",
        f"GRANT SELECT ON {', '.join(VISIBLE_VIEWS)} TO {api}",
        f"GRANT INSERT ON {AUDIT_TABLE} TO {api}",
        # the workers: every table (they write readings, alerts, deliveries, the outbox) …
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ingest}",
        # … but audit rows are append-only for them too (retention runs as the owner)
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {AUDIT_TABLE} FROM {ingest}",
        f"REVOKE SELECT, UPDATE, DELETE, TRUNCATE ON system_contexts FROM {ingest}",
    ]


_SYSTEM_CONTEXTS: Final = """
    CREATE TABLE IF NOT EXISTS system_contexts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        purpose text NOT NULL CHECK (purpose <> ''),
        role text NOT NULL DEFAULT current_user,
        backend_pid integer NOT NULL DEFAULT pg_backend_pid(),
        client_addr inet NULL DEFAULT inet_client_addr()
    )"""


def v98(_mode: StorageMode) -> list[str]:
    return [
        _create_role(AppRole.API),
        _create_role(AppRole.INGEST),
        _SYSTEM_CONTEXTS,
        *_FUNCTIONS,
        *(s for table, (_, cond) in TENANT_TABLES.items() for s in _policy(table, cond)),
        *_audit_policies(),
        *_views(),
        *_grants(),
    ]
