"""Row-level security, proven table by table (issue 10 item 3, :mod:`gateway.db.rls`).

The fleet has two organisations: the hospital ``rh`` follows p-001; the GP ``gp`` follows
p-001 and p-002 and owns hub-gp-1. Every tenant-scoped table gets rows that are the GP's alone
(p-002, hub-gp-1, organisation gp). As the API role, each table must then be: RLS enabled and
forced with a policy; refused loudly without a context; without a single GP-only row for the
hospital (compared by ``ctid`` with what the owner sees); with those rows for the GP; and
refusing the hospital's insert of a GP row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from gateway.db.context import role_dsn
from gateway.db.rls import API_READ_ONLY, AUDIT_TABLE, TENANT_TABLES, VISIBLE_VIEWS, AppRole
from tests.gateway.api_support import insert_reading, seed

#: rows only the GP may see, one or more per tenant table not filled by the fleet
_SEED = [
    "INSERT INTO consents (patient_id, kind, sector, recorded_by, recorded_org) "
    "VALUES ('p-002', 'sharing', 'gp', 'Dr. Berg', 'gp')",
    """INSERT INTO clinical_alerts (patient_id, rule_code, rule_version, params, level, state,
           message, reading_key, effective_at, last_effective_at, created_at, updated_at)
       VALUES ('p-002', 'W1', 1, '{}', 'yellow', 'open', 'weight +2.1 kg in 3 days', 'k-rls',
               now(), now(), now(), now())""",
    """INSERT INTO alert_occurrences (alert_id, patient_id, reading_key, effective_at, late,
           rule_version, level)
       SELECT alert_id, patient_id, 'k-rls', now(), false, 1, 'yellow' FROM clinical_alerts""",
    """INSERT INTO alert_event (alert_id, patient_id, at, type, actor, level)
       SELECT alert_id, patient_id, now(), 'created', 'system', 'yellow' FROM clinical_alerts""",
    "INSERT INTO alerts (patient_id, rule_id) "
    "SELECT patient_id, rule_id FROM rules WHERE patient_id = 'p-002'",
    """INSERT INTO adherence_slots (patient_id, rule_code, rule_version, day, slot, opens, closes,
           outcome, decided_at)
       VALUES ('p-002', 'A1', 1, current_date, 0, now() - interval '2 hours', now(), 'met',
               now())""",
    """INSERT INTO alert_rule_versions (patient_id, rule_code, version, effective_from,
           definition, enabled, author, reason)
       VALUES ('p-002', 'W1', 1, now(), '{}', true, 'Dr. Berg', 'programme start')""",
    """INSERT INTO patient_suppressions (patient_id, starts_at, ends_at, reason, author)
       VALUES ('p-002', now(), now() + interval '1 day', 'admitted', 'Dr. Berg')""",
    "INSERT INTO reprocess_runs (selection, actor, reason) VALUES ('{}', 'dev', 'fix')",
    """INSERT INTO reading_versions (run_id, patient_id, change, diff, old_key, new_key)
       SELECT run_id, 'p-002', 'changed', '{}', 'k-old', 'k-new' FROM reprocess_runs""",
    "INSERT INTO alert_escalation_policy (alert_id, snapshot_at) "
    "SELECT alert_id, now() FROM clinical_alerts",
    """INSERT INTO alert_escalations (alert_id, step, started_at, due_at, fired_at, event_id)
       SELECT alert_id, 0, now(), now(), now(), event_id FROM alert_event""",
    "INSERT INTO webhooks (org_id, url) VALUES ('gp', 'https://gp.example/hook')",
    "INSERT INTO email_recipients (org_id, address) VALUES ('gp', 'nurse@gp.example')",
    """INSERT INTO event_deliveries (event_id, patient_id, org_id, channel, target_id)
       SELECT e.event_id, e.patient_id, 'gp', 'webhook', w.webhook_id
       FROM alert_event e, webhooks w""",
    "INSERT INTO alert_deliveries (alert_id, webhook_id) "
    "SELECT a.alert_id, w.webhook_id FROM alerts a, webhooks w",
    "INSERT INTO dead_letters (hub_id, payload, reason) VALUES ('hub-gp-1', '\\x00', 'bad')",
    """INSERT INTO held_records (key, hub_id, device_id, source, received_at, raw, reason)
       VALUES ('k-held', 'hub-gp-1', 'A&D-UA651', 'ble', now(), '\\x00', 'unknown-user')""",
    """INSERT INTO technical_alerts (hub_id, kind, state, count, first_at, last_at)
       VALUES ('hub-gp-1', 'hub-silent', 'open', 1, now(), now())""",
    """INSERT INTO fhir_outbox (time, hub_id, device_id, grp, patient_id)
       VALUES (now(), 'hub-gp-1', 'A&D-UA651', 'g', 'p-002')""",
    "INSERT INTO audit_events (request_id, actor, org_id, role, resource, outcome, purpose) "
    "VALUES ('r', 'Dr. Berg', 'gp', 'clinician', 'readings', 'allowed', 'treatment')",
]

_GP_ALERTS = "alert_id IN (SELECT alert_id FROM clinical_alerts WHERE patient_id = 'p-002')"
#: which rows of each table the hospital must never see
_GP_ONLY: dict[str, str] = {
    "care_relations": "org_id = 'gp'",
    "alert_escalations": _GP_ALERTS,
    "alert_escalation_policy": _GP_ALERTS,
    "event_deliveries": "org_id = 'gp'",
    "alert_deliveries": "webhook_id IN (SELECT webhook_id FROM webhooks WHERE org_id = 'gp')",
    "api_tokens": "org_id = 'gp'",
    "webhooks": "org_id = 'gp'",
    "email_recipients": "org_id = 'gp'",
    "hubs": "hub_id = 'hub-gp-1'",
    "devices": "hub_id = 'hub-gp-1'",
    "dead_letters": "hub_id = 'hub-gp-1'",
    "held_records": "hub_id = 'hub-gp-1'",
    "technical_alerts": "hub_id = 'hub-gp-1'",
    "fhir_outbox": "true",
}
_NOT_FOR_CLINICIANS = {"fhir_outbox"}  # background work only: not even the GP reads it

#: tables outside the tenant model, each for a reason (a new table must be classified)
_INTERNAL = {
    "readings",  # through visible_readings only (compression does not combine with RLS)
    "readings_daily_mat",
    "readings_hourly_mat",
    "schema_migrations",
    "fhir_push_state",
    "reprocess_runs",  # who ran a reprocess and why: the owner's CLI
    "system_contexts",
    "telehub_aggregate_state",
    "telehub_job_runs",
}


@pytest.fixture
def owner(fresh_db: str) -> Iterator[psycopg.Connection[Any]]:
    seed(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for stmt in _SEED:
            conn.execute(stmt.encode())
        insert_reading(conn, key="r-rh", patient_id="p-001", hub_id="hub-rh-1")
        insert_reading(conn, key="r-gp", patient_id="p-002", hub_id="hub-gp-1")
        yield conn


def _api(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(role_dsn(dsn, AppRole.API))


def _as_org(conn: psycopg.Connection[Any], org: str, role: str = "clinician") -> None:
    conn.execute(
        "SELECT set_config('telehub.org', %s, true), set_config('telehub.role', %s, true)",
        (org, role),
    )


def _ctids(conn: psycopg.Connection[Any], table: str, where: str = "true") -> set[str]:
    query = sql.SQL("SELECT ctid::text FROM {} WHERE ").format(sql.Identifier(table))
    return {r[0] for r in conn.execute(query + sql.SQL(where)).fetchall()}


def test_every_table_is_classified_and_every_tenant_table_forced(
    owner: psycopg.Connection[Any],
) -> None:
    tables = {
        r[0]
        for r in owner.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ).fetchall()
    }
    classified = set(TENANT_TABLES) | {AUDIT_TABLE, "orgs"} | set(API_READ_ONLY) | _INTERNAL
    assert tables - classified == set(), "a new table needs a place in gateway.db.rls"
    for table in [*TENANT_TABLES, AUDIT_TABLE]:
        row = owner.execute(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            (table,),
        ).fetchone()
        assert row is not None
        assert row[0] and row[1] and row[2] >= 1, table
        assert owner.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone() != (0,), f"{table} is not seeded: the checks below would prove nothing"


def test_the_app_roles_are_unprivileged_and_own_nothing(owner: psycopg.Connection[Any]) -> None:
    for role in AppRole:
        row = owner.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, "
            "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid), "
            "(SELECT count(*) FROM pg_proc p WHERE p.proowner = r.oid) "
            "FROM pg_roles r WHERE rolname = %s",
            (str(role),),
        ).fetchone()
        assert row == (False, False, False, False, 0, 0), role


def test_no_context_is_refused_loudly(owner: psycopg.Connection[Any], fresh_db: str) -> None:
    for dsn in (role_dsn(fresh_db, AppRole.API), role_dsn(fresh_db, AppRole.INGEST)):
        for table in TENANT_TABLES:
            if table in _NOT_FOR_CLINICIANS and "telehub_api" in dsn:
                continue
            with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
    with _api(fresh_db) as api, pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.execute("SELECT * FROM visible_readings")


@pytest.mark.parametrize("table", sorted(TENANT_TABLES))
def test_no_row_crosses_organisations(
    owner: psycopg.Connection[Any], fresh_db: str, table: str
) -> None:
    where = _GP_ONLY.get(table, "patient_id = 'p-002'")
    gp_only = _ctids(owner, table, where)
    assert gp_only, f"no GP-only row seeded in {table}"
    with _api(fresh_db) as api:
        if table in _NOT_FOR_CLINICIANS:
            _as_org(api, "gp")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                api.execute(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(table)))
            return
        _as_org(api, "rh")
        assert _ctids(api, table) & gp_only == set()
        api.rollback()
        _as_org(api, "gp")
        assert _ctids(api, table) >= gp_only
        api.rollback()
        # the hospital writing a row of the GP's is refused by the policy's check
        row = owner.execute(
            sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE ").format(sql.Identifier(table))
            + sql.SQL(where)
            + sql.SQL(" LIMIT 1")
        ).fetchone()
        assert row is not None
        _as_org(api, "rh")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            api.execute(
                sql.SQL(
                    "INSERT INTO {t} OVERRIDING SYSTEM VALUE "
                    "SELECT * FROM jsonb_populate_record(NULL::{t}, %s::jsonb)"
                ).format(t=sql.Identifier(table)),
                (json.dumps(row[0]),),
            )


def test_readings_only_through_the_visible_views(
    owner: psycopg.Connection[Any], fresh_db: str
) -> None:
    with _api(fresh_db) as api:
        for table in ("readings", "readings_daily", "readings_hourly", "readings_daily_mat"):
            _as_org(api, "gp")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                api.execute(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(table)))
            api.rollback()
        for view in VISIBLE_VIEWS:
            _as_org(api, "rh")
            api.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(view)))
            api.rollback()
        _as_org(api, "rh")
        keys = {r[0] for r in api.execute("SELECT key FROM visible_readings").fetchall()}
        assert keys == {"r-rh"}
        api.rollback()
        _as_org(api, "gp")
        keys = {r[0] for r in api.execute("SELECT key FROM visible_readings").fetchall()}
        assert keys == {"r-rh", "r-gp"}


def test_the_api_role_cannot_take_a_system_context(
    owner: psycopg.Connection[Any], fresh_db: str
) -> None:
    with _api(fresh_db) as api:
        api.execute("SELECT set_config('telehub.system', 'ingest', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot take a system"):
            api.execute("SELECT * FROM patients")


def test_audit_rows_are_insert_only_for_the_app_roles(
    owner: psycopg.Connection[Any], fresh_db: str
) -> None:
    with _api(fresh_db) as api:
        _as_org(api, "gp")
        api.execute(
            "INSERT INTO audit_events (request_id, actor, org_id, role, resource, outcome, "
            "purpose) VALUES ('r2', 'a', 'gp', 'clinician', 'readings', 'allowed', 'treatment')"
        )
        for stmt in ("SELECT * FROM audit_events", "DELETE FROM audit_events",
                     "UPDATE audit_events SET actor = 'x'"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege), api.transaction():
                api.execute(stmt)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), api.transaction():
            api.execute(  # another organisation's name on the row
                "INSERT INTO audit_events (request_id, actor, org_id, role, resource, outcome, "
                "purpose) VALUES ('r3', 'a', 'rh', 'clinician', 'x', 'allowed', 'treatment')"
            )
    with psycopg.connect(role_dsn(fresh_db, AppRole.INGEST)) as ingest:
        ingest.execute("SELECT set_config('telehub.system', 'test', true)")
        for stmt in ("DELETE FROM audit_events", "UPDATE audit_events SET actor = 'x'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), ingest.transaction():
                ingest.execute(stmt)
