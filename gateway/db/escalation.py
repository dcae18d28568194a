"""Escalation (migration 97): the policies per alert level (``escalation_policies``, from the
fleet file), each alert's snapshot of its policy (``alert_escalation_policy``, taken when the
sweep first sees the alert) and the steps fired (``alert_escalations``: once per alert, step and
start — a re-opened alert starts again). See :mod:`gateway.notify.escalation`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode


def v97(_mode: StorageMode) -> list[str]:
    return [
        """
        CREATE TABLE IF NOT EXISTS escalation_policies (
            level text PRIMARY KEY CHECK (level IN ('red', 'yellow', 'blue', 'info')),
            policy jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        """
        CREATE TABLE IF NOT EXISTS alert_escalation_policy (
            alert_id bigint PRIMARY KEY REFERENCES clinical_alerts (alert_id) ON DELETE CASCADE,
            policy jsonb NULL,
            snapshot_at timestamptz NOT NULL
        )""",
        """
        CREATE TABLE IF NOT EXISTS alert_escalations (
            alert_id bigint NOT NULL REFERENCES clinical_alerts (alert_id) ON DELETE CASCADE,
            step integer NOT NULL CHECK (step >= 0),
            started_at timestamptz NOT NULL,
            due_at timestamptz NOT NULL,
            fired_at timestamptz NOT NULL,
            event_id bigint NOT NULL,
            PRIMARY KEY (alert_id, step, started_at)
        )""",
    ]
