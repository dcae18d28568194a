"""Gateway configuration from the environment (prefix ``TELEHUB_``), e.g. ``TELEHUB_DATABASE_URL``.

Shared by the ingester (:mod:`gateway.ingest`) and the API service (``gateway.service``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Final, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: TELEHUB_* variables that are not gateway settings: the CLI's log level, the test and bench
#: harness (prefixes).
OTHER_VARIABLES: Final = frozenset({"TELEHUB_LOG_LEVEL"})
OTHER_PREFIXES: Final = ("TELEHUB_TEST_", "TELEHUB_BENCH_")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``TELEHUB_*`` names in ``environ`` that configure nothing (a misspelt setting)."""
    known = {f"TELEHUB_{name.upper()}" for name in GatewaySettings.model_fields}
    return sorted(
        name
        for name in environ
        if (u := name.upper()).startswith("TELEHUB_")
        and u not in known
        and u not in OTHER_VARIABLES
        and not u.startswith(OTHER_PREFIXES)
    )


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEHUB_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/telehub",
        description="PostgreSQL connection URL (libpq syntax) of the central database, as the "
        "role that owns the schema (migrations, the lifecycle job).",
    )
    api_database_url: str | None = Field(
        default=None,
        description="Connection URL of the API's role (telehub_api, row-level security). "
        "Default: database_url with the user telehub_api and no password.",
    )
    ingest_database_url: str | None = Field(
        default=None,
        description="Connection URL of the ingester's and workers' role (telehub_ingest). "
        "Default: database_url with the user telehub_ingest and no password.",
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
        description="How often the ingester creates the readings partitions ahead of time and, "
        "on plain PostgreSQL, refreshes the aggregates and applies retention (TimescaleDB runs "
        "its own jobs).",
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

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Self:
        """A misspelt variable (TELEHUB_SHARED_SUBSCRIPTION for ..._GROUP) fails loudly."""
        if unknown := unknown_variables(os.environ):
            raise ValueError(
                f"unknown environment variable(s) {', '.join(unknown)}: not a TELEHUB_* "
                "setting (see docs/operations.md)"
            )
        return self

    @field_validator(
        "session_expiry",
        "shared_session_expiry",
        "max_future_skew",
        "partition_maintenance_interval",
        "api_max_range",
        "hub_silent_after",
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

    fhir_push_url: str | None = Field(
        default=None,
        description="Base URL of an external FHIR R4 server that receives transaction Bundles "
        "of the stored readings (docs/fhir.md). None: no push.",
    )
    fhir_push_token: str | None = Field(
        default=None, description="Bearer token for the FHIR push server (None: no auth header)."
    )
    hub_silent_after: timedelta = Field(
        default=timedelta(seconds=150),
        description="A hub not heard for longer than this raises a hub-silent technical alert "
        "(A3: 2 x the hub's 60 s heartbeat + 30 s).",
    )
    fhir_push_interval: float = Field(
        default=10.0, gt=0, description="Seconds between FHIR push rounds when idle."
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for alert e-mail (an organisation's [[emails]] are reached when "
        "its webhooks fail or it has none). None: e-mail deliveries wait, with that reason.",
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_sender: str = Field(default="telehub@localhost", description="From address of alerts.")
    smtp_start_tls: bool = Field(default=False, description="Upgrade the SMTP link with STARTTLS.")
    smtp_username: str | None = Field(default=None, description="SMTP login (None: none).")
    smtp_password: str | None = Field(default=None, description="SMTP password.", repr=False)
    worklist_url: str | None = Field(
        default=None, description="Link to the clinicians' worklist put into alert e-mail."
    )
    api_docs: bool = Field(
        default=True,
        description="Serve the OpenAPI schema (/openapi.json) and the docs pages (/docs, /redoc). "
        "Switch off in production (TELEHUB_API_DOCS=false): they then answer 404.",
    )
    api_max_body_bytes: int = Field(
        default=64 * 1024, ge=0, description="Largest request body the API accepts (else 413)."
    )
    api_max_url_bytes: int = Field(
        default=8 * 1024, ge=256, description="Longest path + query string (else 414)."
    )
    api_max_range: timedelta = Field(
        default=timedelta(days=93),
        description="Longest time range one readings request may span (else 422).",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OIDC issuer URL; with oidc_audience set, bearer JWTs from it are accepted "
        "(validated against its JWKS) next to API tokens.",
    )
    oidc_audience: str | None = Field(default=None, description="Required `aud` of OIDC tokens.")
    oidc_algorithms: tuple[str, ...] = Field(
        default=("RS256", "ES256"), description="Allowed JWT algorithms (never HS*, never none)."
    )
