"""``telehub broker setup``: the directory it writes runs a real Mosquitto as it is, and the hub
settings it writes connect the edge's own uplink settings — in both hub authentication modes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.outbox import Outbox
from edge.uplink import Uplink
from telehub.broker_setup import HubAuth, SetupError, hubs_of_fleet, setup
from telehub.cli import main
from tests.deploy.broker_kit import pub, tool
from tests.fixtures.fix_mqtt import free_port, mosquitto_binary, port_open
from wire import contract
from wire.mqtt import ConnectRefused, MqttClient, MqttError, MqttSettings, PublishRefused

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _start(conf: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (conf.parent / "mosquitto.log").open("wb")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
    try:
        text = conf.read_text()
        ports = [int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("listener ")]
        deadline = time.monotonic() + 10
        while not all(port_open("127.0.0.1", p, 0.2) for p in ports):
            assert proc.poll() is None, (conf.parent / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, "mosquitto did not start listening"
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()


def _hub_settings(directory: Path, hub: str, tmp: Path) -> MqttSettings:
    """What the edge agent would connect with, from the hub.toml made of the written table."""
    doc = tomllib.loads(
        f'hub_id = "{hub}"\ndata_dir = "{tmp / hub}"\n'
        + (directory / "hubs" / hub / "mqtt.toml").read_text()
    )
    config = parse_config(doc)
    outbox = Outbox(config.outbox_path)
    try:
        return Uplink(config, outbox).settings
    finally:
        outbox.close()


def _ingester_settings(directory: Path) -> MqttSettings:
    line = (directory / "gateway.env").read_text().strip()
    assert line.startswith("TELEHUB_MQTT_URL=")
    return MqttSettings.from_url(line.split("=", 1)[1])


async def _round_trip(directory: Path, tmp: Path) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with MqttClient(_ingester_settings(directory), "telehub-ingester") as ingester:
        await ingester.subscribe(contract.READINGS_FILTER, qos=1)
        for hub in ("hub-a", "hub-b"):
            async with MqttClient(_hub_settings(directory, hub, tmp), hub) as client:
                await client.publish(contract.readings_topic(hub), hub.encode(), qos=1)
                # Another hub's topic: refused (0x87 in the MQTT 5 PUBACK), nothing delivered.
                other = "hub-b" if hub == "hub-a" else "hub-a"
                with pytest.raises(PublishRefused):
                    await client.publish(contract.readings_topic(other), b"forged", qos=1)
        it = ingester.messages().__aiter__()
        while len(got) < 2:
            m = await asyncio.wait_for(anext(it), 10)
            got.append((m.topic, m.payload))
        with pytest.raises(TimeoutError):
            m = await asyncio.wait_for(anext(it), 0.5)
            got.append((m.topic, m.payload))
    return got


@pytest.mark.parametrize("auth", list(HubAuth))
async def test_the_written_broker_runs_and_confines_each_hub(tmp_path: Path, auth: HubAuth) -> None:
    directory = tmp_path / "broker"
    done = setup(
        directory,
        ["hub-a", "hub-b"],
        auth=auth,
        central_port=free_port(),
        hub_port=free_port(),
    )
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(done.gateway_env).st_mode) == 0o600
    secret = "mqtt-password" if auth is HubAuth.PASSWORD else "hub.key"
    assert stat.S_IMODE(os.stat(directory / "hubs" / "hub-a" / secret).st_mode) == 0o600
    with _start(done.conf):
        got = await _round_trip(directory, tmp_path)
        assert sorted(got) == [
            (contract.readings_topic("hub-a"), b"hub-a"),
            (contract.readings_topic("hub-b"), b"hub-b"),
        ]
        hub = _hub_settings(directory, "hub-a", tmp_path)
        # Another hub's client id is refused whatever credentials hub-a holds (password mode:
        # the id is bound to the user; certificate mode: the id is the certificate's CN).
        if auth is HubAuth.PASSWORD:
            with pytest.raises(ConnectRefused):
                async with MqttClient(hub, "hub-b"):
                    pass
            wrong = MqttSettings(
                host=hub.host, port=hub.port, username="hub-a", password="wrong",
                tls=True, ca_file=hub.ca_file,
            )  # fmt: skip
            with pytest.raises(ConnectRefused):
                async with MqttClient(wrong, "hub-a"):
                    pass
        else:
            # No certificate: the handshake fails, even knowing the ingester's password.
            nocert = MqttSettings(
                host=hub.host, port=hub.port, username="telehub-ingester", password="x",
                tls=True, ca_file=hub.ca_file,
            )  # fmt: skip
            with pytest.raises((MqttError, OSError)):
                async with MqttClient(nocert, "hub-a"):
                    pass
        # The hub listener is TLS in both modes: a plain-text client gets nowhere.
        r = pub(["-h", "127.0.0.1", "-p", str(hub.port), "-u", "hub-a", "-P", "x"], "t", "x")
        assert r.returncode != 0


def test_setup_refuses_what_it_must(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="no hubs"):
        setup(tmp_path / "a", [])
    with pytest.raises(SetupError, match="telehub-ingester"):
        setup(tmp_path / "b", ["telehub-ingester"])
    with pytest.raises(SetupError, match="twice"):
        setup(tmp_path / "c", ["hub-a", "hub-a"])
    setup(tmp_path / "d", ["hub-a"], auth=HubAuth.PASSWORD)
    with pytest.raises(SetupError, match="refusing to overwrite"):
        setup(tmp_path / "d", ["hub-a"])
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[hubs]]\nid = "hub-x"\norg = "o"\n[[hubs]]\nid = "hub-y"\norg = "o"\n')
    assert hubs_of_fleet(fleet) == ["hub-x", "hub-y"]
    fleet.write_text("[[hubs]\n")
    with pytest.raises(SetupError, match=r"fleet\.toml"):
        hubs_of_fleet(fleet)


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool("mosquitto_pub")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[hubs]]\nid = "hub-x"\norg = "o"\n')
    rc = main(["broker", "setup", str(tmp_path / "b"), "--fleet", str(fleet), "--hub", "hub-y"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"mosquitto -c {tmp_path / 'b' / 'mosquitto.conf'}" in out.out + out.err
    assert sorted(p.name for p in (tmp_path / "b" / "hubs").iterdir()) == ["hub-x", "hub-y"]
    assert main(["broker", "setup", str(tmp_path / "b"), "--hub", "hub-z"]) != 0
    assert "refusing to overwrite" in capsys.readouterr().err
