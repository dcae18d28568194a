"""The outbound view of an alert: one JSON shape for the API, the live stream and webhooks.

Numeric values are read from PostgreSQL as text (``value::text``) so a device's precision reaches
the clinician unchanged ("2.00" stays "2.00", no float rounding, no exponent notation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, computed_field

from gateway import catalog

log = logging.getLogger(__name__)

#: The NOTIFY channel of new alerts and alert updates (payload: the alert id), see SCHEMA.md.
ALERTS_CHANNEL: Final = "telehub_alerts"

#: SELECT list producing the fields of :class:`AlertView` from ``alerts a``.
ALERT_COLUMNS: Final = """
    a.alert_id, a.patient_id, a.rule_id, a.reading_key, a.reading_time, a.mdc,
    a.value::text AS value, a.unit, a.severity, a.message, a.raised_at, a.occurrences,
    a.last_value::text AS last_value, a.last_seen_at,
    CASE WHEN a.acknowledged_at IS NULL THEN 'open' ELSE 'acknowledged' END AS status,
    a.acknowledged_at, a.acknowledged_by, a.acknowledged_org"""

AlertStatus = Literal["open", "acknowledged"]


class AlertView(BaseModel):
    """An alert raised by a patient's threshold rule.

    Further breaches of the same rule while the alert is open increment ``occurrences`` and update
    ``last_value``/``last_seen_at`` instead of raising a new alert.
    """

    model_config = ConfigDict(frozen=True)

    alert_id: int
    patient_id: str
    rule_id: int | None = None
    reading_key: str | None = Field(
        default=None, description="Idempotency key of the first reading."
    )
    reading_time: datetime | None = Field(
        default=None, description="Effective time of the first reading."
    )
    mdc: int | None = Field(default=None, description="MDC metric code of the measured quantity.")
    value: str | None = Field(default=None, description="First breaching value, decimal as text.")
    unit: str | None = Field(default=None, description="UCUM unit of value/last_value.")
    severity: str | None = Field(default=None, description="info | warning | critical")
    message: str | None = None
    raised_at: datetime
    occurrences: int = Field(description="Breaches counted while the alert was open.")
    last_value: str | None = Field(
        default=None, description="Latest breaching value, decimal as text."
    )
    last_seen_at: datetime | None = None
    status: AlertStatus
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, description="Clinician who acknowledged.")
    acknowledged_org: str | None = Field(
        default=None, description="Organisation of that clinician."
    )

    @computed_field(description="Name of the MDC metric, if the gateway knows it.")  # type: ignore[prop-decorator]
    @property
    def metric(self) -> str | None:
        return metric_name(self.mdc)


def metric_name(mdc: int | None) -> str | None:
    """Display name of an MDC metric code (None if unknown)."""
    m = catalog.metric(mdc) if mdc is not None else None
    return m.name if m is not None else None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert as it is now, with the organisations that follow its patient."""

    alert: AlertView
    orgs: frozenset[str]

    @property
    def event_id(self) -> str:
        """Changes whenever the alert does (new occurrence, acknowledgement)."""
        a = self.alert
        return f"{a.alert_id}-{a.occurrences}-{'a' if a.acknowledged_at else 'o'}"


async def fetch_alert_events(
    conn: psycopg.AsyncConnection[object], alert_ids: Sequence[int]
) -> list[AlertEvent]:
    """The current state of these alerts (ids that do not exist are skipped), in id order."""
    if not alert_ids:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {ALERT_COLUMNS},
                   array(SELECT pa.org_id FROM patient_access pa
                         WHERE pa.patient_id = a.patient_id) AS orgs
                FROM alerts a WHERE a.alert_id = ANY(%s) ORDER BY a.alert_id""",
            (list(alert_ids),),
        )
        rows = await cur.fetchall()
    events = []
    for row in rows:
        orgs = frozenset(row.pop("orgs"))
        events.append(AlertEvent(alert=AlertView.model_validate(row), orgs=orgs))
    return events


def parse_alert_id(payload: str) -> int | None:
    """The alert id of a ``telehub_alerts`` notification, or None if the payload is not one."""
    try:
        value = int(payload.strip())
    except ValueError:
        log.warning("ignoring %s notification with a non-numeric payload", ALERTS_CHANNEL)
        return None
    return value if value > 0 else None
