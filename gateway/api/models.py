"""Response models of the API (pydantic: the API boundary). Decimals are strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.notify.alerts import AlertView

__all__ = [
    "AlertList",
    "AlertView",
    "DeadLetter",
    "DeadLetterList",
    "Delivery",
    "DeliveryList",
    "DeviceOut",
    "Health",
    "HubList",
    "HubOut",
    "OutboxOut",
    "PatientList",
    "PatientOut",
    "ReadingOut",
    "ReadingsPage",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class PatientOut(_Out):
    patient_id: str
    display_name: str | None
    open_alerts: int = Field(description="Unacknowledged alerts of this patient.")
    last_reading_at: datetime | None = Field(description="Effective time of the latest reading.")


class PatientList(_Out):
    patients: list[PatientOut]


class ReadingOut(_Out):
    """One stored metric, as the device reported it (see docs/protocol.md)."""

    time: datetime = Field(description="Effective time (UTC), see time_source.")
    time_source: str = Field(description="device | device-unverified | device-unset | hub")
    device_time: str | None = Field(description="The device's own timestamp, as sent.")
    received_at: datetime = Field(description="When the hub received it.")
    hub_clock: str
    key: str = Field(description="Idempotency key.")
    hub_id: str
    device_id: str
    source: str = Field(description="Decoder that produced it, e.g. '2a35'.")
    kind: str = Field(description="spot | continuous")
    mdc: int = Field(description="MDC metric code.")
    metric: str | None = Field(description="Name of the metric, if the gateway knows it.")
    loinc: list[str]
    value: str | None = Field(
        description="Decimal as text with the device's precision; null iff special is set."
    )
    unit: str = Field(description="UCUM unit.")
    mdc_unit: int
    special: str | None = Field(description="nan | nres | +inf | -inf | reserved ...")
    orig_value: str | None = Field(description="Value as sent, when it was converted.")
    orig_unit: str | None
    panel: int | None = Field(description="Compound code, e.g. 150020 (blood pressure).")
    group: str = Field(description="Shared by the metrics of one device record.")
    flags: list[str]
    sequence: int | None
    user_id: int | None


class ReadingsPage(_Out):
    patient_id: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    count: int
    truncated: bool = Field(
        description="True if more readings match than `limit`: the newest "
        "`limit` are returned; narrow the range to see the rest."
    )
    readings: list[ReadingOut] = Field(description="Newest first.")


class AlertList(_Out):
    alerts: list[AlertView] = Field(description="Newest first.")


class OutboxOut(_Out):
    pending: int | None = None
    bytes: int | None = None
    dropped_continuous: int | None = None
    full: bool | None = None


class DeviceOut(_Out):
    device_id: str
    model: str | None
    last_seen: datetime | None


class HubOut(_Out):
    hub_id: str
    org_id: str | None
    state: str = Field(description="online | offline | unknown (from the retained status).")
    last_seen: datetime | None
    status_at: datetime | None = Field(description="Time of the hub's last status message.")
    outbox: OutboxOut | None = Field(description="The hub's store-and-forward outbox.")
    devices: list[DeviceOut]


class HubList(_Out):
    hubs: list[HubOut]


class DeadLetter(_Out):
    id: int
    received_at: datetime
    hub_id: str | None
    topic: str | None
    reading_key: str | None
    reason: str
    payload_size: int
    payload_base64: str | None = Field(
        default=None, description="The payload, only with include_payload=true."
    )


class DeadLetterList(_Out):
    dead_letters: list[DeadLetter] = Field(description="Newest first.")
    next_before_id: int | None = Field(description="Pass as before_id for the next page.")


class Delivery(_Out):
    alert_id: int
    webhook_id: int
    org_id: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="Null once delivered or failed.")
    delivered_at: datetime | None
    last_error: str | None


class DeliveryList(_Out):
    deliveries: list[Delivery]


class Health(_Out):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    stream: dict[str, int | bool] = Field(description="Live-stream broadcaster counters.")
    ingester: dict[str, int | float | str | bool | None] | None = Field(
        description="Counters of the ingester running in this process, if any."
    )
