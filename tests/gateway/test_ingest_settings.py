"""GatewaySettings from the environment."""

from __future__ import annotations

from datetime import timedelta

import pydantic
import pytest

from gateway.settings import GatewaySettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "MQTT_URL", "MQTT_PROTOCOL", "SESSION_EXPIRY"):
        monkeypatch.delenv(f"TELEHUB_{name}", raising=False)
    s = GatewaySettings()
    assert (
        s.database_url,
        s.mqtt_url,
        s.mqtt_protocol,
        s.ingester_client_id,
        s.session_expiry,
        s.shared_subscription_group,
        s.batch_max_readings,
        s.api_host,
        s.api_port,
    ) == (
        "postgresql://postgres@127.0.0.1:5432/telehub",
        "mqtt://127.0.0.1:1883",
        "5",
        "telehub-ingester",
        timedelta(days=7),
        None,
        5000,
        "127.0.0.1",
        8080,
    )


def test_environment_with_prefix_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEHUB_MQTT_PROTOCOL", "3.1.1")
    monkeypatch.setenv("TELEHUB_SESSION_EXPIRY", "3600")
    monkeypatch.setenv("TELEHUB_MAX_FUTURE_SKEW", "PT2H")
    monkeypatch.setenv("TELEHUB_SHARED_SUBSCRIPTION_GROUP", "ingest")
    s = GatewaySettings()
    assert (s.mqtt_protocol, s.session_expiry, s.max_future_skew, s.shared_subscription_group) == (
        "3.1.1",
        timedelta(hours=1),
        timedelta(hours=2),
        "ingest",
    )


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEHUB_MQTT_PROTOCOL", "4")
    with pytest.raises(pydantic.ValidationError, match="mqtt_protocol"):
        GatewaySettings()
    monkeypatch.setenv("TELEHUB_MQTT_PROTOCOL", "5")
    monkeypatch.setenv("TELEHUB_BATCH_MAX_READINGS", "0")
    with pytest.raises(pydantic.ValidationError, match="batch_max_readings"):
        GatewaySettings()


def test_misspelt_variable_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEHUB_SHARED_SUBSCRIPTION", "ingest")  # the setting ends in _GROUP
    with pytest.raises(pydantic.ValidationError, match="TELEHUB_SHARED_SUBSCRIPTION: not a"):
        GatewaySettings()
    monkeypatch.delenv("TELEHUB_SHARED_SUBSCRIPTION")
    monkeypatch.setenv("telehub_batch_max_reading", "10")  # case-insensitive, like the settings
    with pytest.raises(pydantic.ValidationError, match="telehub_batch_max_reading"):
        GatewaySettings()


def test_non_setting_variables_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEHUB_LOG_LEVEL", "INFO")
    monkeypatch.setenv("TELEHUB_TEST_DSN", "postgresql://x")
    monkeypatch.setenv("TELEHUB_BENCH_DSN", "postgresql://x")
    monkeypatch.setenv("TELEHUB_SHARED_SUBSCRIPTION_GROUP", "ingest")
    assert GatewaySettings().shared_subscription_group == "ingest"


def test_gateway_command_refuses_a_misspelt_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from gateway.main import run_ingester_from_env

    monkeypatch.setenv("TELEHUB_SHARED_SUBSCRIPTION", "ingest")
    assert asyncio.run(run_ingester_from_env(asyncio.Event())) == 2


def test_example_environment_file_names_only_settings() -> None:
    from pathlib import Path

    from gateway.settings import unknown_variables

    path = Path(__file__).parents[2] / "deploy/systemd/gateway.env.example"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    names = dict(ln.split("=", 1) for ln in lines)
    assert len(names) >= 5 and unknown_variables(names) == []
    assert unknown_variables({**names, "TELEHUB_DB_TIMEOUTS": "3"}) == ["TELEHUB_DB_TIMEOUTS"]
