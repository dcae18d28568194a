"""Gateway configuration from the environment (prefix ``TELEHUB_``), e.g. ``TELEHUB_DATABASE_URL``.

Shared by the ingester (:mod:`gateway.ingest`) and the API service (``gateway.service``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEHUB_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/telehub",
        description="PostgreSQL connection URL (libpq syntax) of the central database.",
    )
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="MQTT broker URL: mqtt://[user:pass@]host[:port], or mqtts:// for TLS.",
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version. '5' uses clean_start=False with a session expiry; "
        "'3.1.1' uses clean_session=False (the broker keeps the session until it is cleaned).",
    )
    mqtt_ca_file: str | None = Field(
        default=None, description="CA bundle for mqtts:// (None: the system trust store)."
    )
    ingester_client_id: str = Field(
        default="telehub-ingester",
        description="Stable MQTT client id of the ingester: the broker keeps its persistent "
        "session (subscriptions and unacknowledged messages) under this id.",
    )
    session_expiry: timedelta = Field(
        default=timedelta(days=7),
        description="MQTT 5 session expiry: how long the broker keeps queueing readings for the "
        "ingester while it is down.",
    )
    shared_subscription_group: str | None = Field(
        default=None,
        description="When set (and the protocol is MQTT 5), subscribe via "
        "$share/<group>/<filter> so that several ingesters share the load.",
    )
    shared_session_expiry: timedelta = Field(
        default=timedelta(seconds=60),
        description="Session expiry of a shared-group member (MQTT 5), which also connects with "
        "clean start: a member that stops for good strands its share for at most this long and "
        "its unacknowledged readings are re-sent by the hubs (no receipt -> outbox re-send), so "
        "scaling down loses nothing. Its client id must be unique per member.",
    )
    batch_max_readings: int = Field(
        default=5000,
        ge=1,
        description="Upper bound on the readings stored in one transaction; a batch is whatever "
        "is already queued after the first message, up to this many readings.",
    )
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT 5 Receive Maximum / client in-flight window: unacknowledged QoS 1 "
        "messages the broker may send before the ingester's PUBACKs.",
    )
    max_future_skew: timedelta = Field(
        default=timedelta(days=1),
        description="Readings whose effective time is further than this ahead of the gateway "
        "clock are rejected (an absurd device or hub clock).",
    )
    device_cache_refresh: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between reloads of the device bindings when a reading names a "
        "device the in-memory cache does not know.",
    )
    partition_maintenance_interval: timedelta = Field(
        default=timedelta(days=1),
        description="How often the ingester creates the readings partitions ahead of time "
        "(no-op under TimescaleDB).",
    )
    reconnect_min: float = Field(
        default=0.5, gt=0, description="First reconnect delay (seconds) after an MQTT/DB failure."
    )
    reconnect_max: float = Field(
        default=30.0, gt=0, description="Longest reconnect delay (seconds); doubles up to this."
    )
    db_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a batch transaction may take before it is abandoned (not acked).",
    )

    @field_validator(
        "session_expiry",
        "shared_session_expiry",
        "max_future_skew",
        "partition_maintenance_interval",
        mode="before",
    )
    @classmethod
    def _seconds(cls, v: object) -> object:
        """Durations: a number of seconds ("3600"), or ISO 8601 ("P7D"), or "7 days"."""
        if isinstance(v, str):
            try:
                return timedelta(seconds=float(v))
            except ValueError:
                return v
        return v

    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds to.")
    api_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP API.")
