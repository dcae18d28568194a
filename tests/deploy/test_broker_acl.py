"""The shipped Mosquitto ACL and per-hub credentials, on a real private broker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from wire import contract
from wire.mqtt import MqttClient, MqttError, MqttSettings

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "telehub.acl"
USERS = {"hub-a": "secret-a", "hub-b": "secret-b", "telehub-ingester": "secret-i"}

pytestmark = pytest.mark.integration


@pytest.fixture
def secured_broker(mosquitto, tmp_path: Path):  # type: ignore[no-untyped-def]
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd (package mosquitto) is needed for the credential tests")
    for i, (user, pw) in enumerate(USERS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run([tool, *flags, "-b", str(passwd), user, pw], check=True)
    config = f"allow_anonymous false\npassword_file {passwd}\nacl_file {ACL}\n"
    return mosquitto(config)


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
        # Mosquitto grants the SUBSCRIBE but the ACL is applied to every delivery.
        await hub_a.subscribe(contract.receipts_topic("hub-a"))
        await hub_a.subscribe(contract.receipts_topic("hub-b"))
        await hub_a.subscribe(contract.READINGS_FILTER)
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
