"""The shipped Mosquitto access control and per-hub credentials, on a real private broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.broker_kit import make_kit
from wire import contract
from wire.mqtt import MqttClient, MqttError, MqttSettings

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class _Broker:
    url: str


@pytest.fixture
def secured_broker(mosquitto, tmp_path: Path) -> _Broker:  # type: ignore[no-untyped-def]
    """The shipped deploy/mosquitto/telehub.conf (dynamic security), password listener."""
    kit, _ = make_kit(mosquitto, tmp_path)
    return _Broker(f"mqtt://127.0.0.1:{kit.central_port}")


def _settings(url: str, user: str, password: str) -> MqttSettings:
    s = MqttSettings.from_url(url)
    return MqttSettings(host=s.host, port=s.port, username=user, password=password)


async def test_hub_publishes_only_on_its_own_topics(secured_broker) -> None:  # type: ignore[no-untyped-def]
    url = secured_broker.url
    ingester = MqttClient(_settings(url, "telehub-ingester", "secret-i"), "ing", manual_ack=False)
    async with ingester:
        await ingester.subscribe(contract.READINGS_FILTER)
        async with MqttClient(_settings(url, "hub-a", "secret-a"), "hub-a") as hub_a:
            await hub_a.publish(contract.readings_topic("hub-a"), b"own")
            # MQTT 5: Mosquitto answers a denied PUBLISH with PUBACK reason 0x87 (not authorized).
            with pytest.raises(MqttError, match="refused"):
                await hub_a.publish(contract.readings_topic("hub-b"), b"forged")
        it = ingester.messages()
        first = await asyncio.wait_for(anext(it), 5)
        assert (first.topic, first.payload) == (contract.readings_topic("hub-a"), b"own")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(it), 0.5)


async def test_hub_cannot_read_another_hubs_receipts(secured_broker) -> None:  # type: ignore[no-untyped-def]
    url = secured_broker.url
    async with MqttClient(_settings(url, "hub-a", "secret-a"), "hub-a") as hub_a:
        # Dynamic security refuses the SUBSCRIBE (0x87) and filters every delivery as well.
        await hub_a.subscribe(contract.receipts_topic("hub-a"))
        for foreign in (contract.receipts_topic("hub-b"), contract.READINGS_FILTER):
            with pytest.raises(MqttError, match="refused"):
                await hub_a.subscribe(foreign)
        ingester = MqttClient(_settings(url, "telehub-ingester", "secret-i"), "ing")
        async with ingester:
            await ingester.publish(contract.receipts_topic("hub-b"), b"for b")
            await ingester.publish(contract.receipts_topic("hub-a"), b"for a")
        async with MqttClient(_settings(url, "hub-b", "secret-b"), "hub-b") as hub_b:
            await hub_b.publish(contract.readings_topic("hub-b"), b"b's reading")
        it = hub_a.messages()
        first = await asyncio.wait_for(anext(it), 5)
        assert (first.topic, first.payload) == (contract.receipts_topic("hub-a"), b"for a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(it), 0.5)


async def test_wrong_password_and_anonymous_are_refused(secured_broker) -> None:  # type: ignore[no-untyped-def]
    url = secured_broker.url
    with pytest.raises(MqttError, match="refused"):
        async with MqttClient(_settings(url, "hub-a", "wrong"), "hub-a"):
            pass
    with pytest.raises(MqttError, match="refused"):
        async with MqttClient(MqttSettings.from_url(url), "anon"):
            pass
