"""Certificate rotation through the real edge agent, checked against PostgreSQL.

A simulated oximeter streams through the real agent (BLE seam, SQLite outbox, uplink with its
X.509 identity) into the shipped Mosquitto configuration (mTLS hub listener) and the real
ingester. Mid-stream the hub gets a new key and certificate and restarts on it; then the old
certificate is revoked (CRL + SIGHUP + kick of live sessions). Every reading the hub ever put
into its outbox is stored exactly once — nothing lost across the restart and the kick, nothing
doubled by the re-sends — and the old certificate is refused afterwards."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest

from edge.agent import AgentParts, run_agent
from edge.config import BleConfig, DeviceBinding, HubConfig, Limits, MqttConfig
from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from gateway.ingest import Ingester
from gateway.settings import GatewaySettings
from simulators.ble.radio import SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.physiology import Physiology, Profile
from telehub import broker_control
from tests.deploy.broker_kit import PASSWORDS, Kit, make_kit, pub
from tests.fixtures.fix_mqtt import Mosquitto, MosquittoFactory
from wire import contract

pytestmark = pytest.mark.integration

ADDR = "C0:26:DA:0F:00:01"
HUB = "hub-a"


@pytest.fixture
def kit_broker(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[Kit, Mosquitto]:
    return make_kit(mosquitto, tmp_path)


def _hub_config(kit: Kit, cert: tuple[Path, Path], data_dir: Path) -> HubConfig:
    return HubConfig(
        hub_id=HUB,
        mqtt=MqttConfig(
            url=f"mqtts://localhost:{kit.tls_port}",
            ca_file=str(kit.server_ca.cert_path),
            cert_file=str(cert[0]),
            key_file=str(cert[1]),
            username=HUB,
        ),
        data_dir=str(data_dir),
        heartbeat_seconds=5.0,
        limits=Limits(receipt_timeout_seconds=2.0, reconnect_max_seconds=1.0),
        ble=BleConfig(
            scan_seconds=0.3, scan_pause_seconds=0.1, idle_timeout=5.0, retry_seconds=0.5
        ),
        devices=[DeviceBinding(address=ADDR, patient="p1")],
    )


async def _run_for(config: HubConfig, radio: SimulatedRadio, seconds: float) -> AgentParts:
    parts: list[AgentParts] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(config, radio, stop=stop, parts=parts))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 30)
    return parts[0]


async def test_rotation_through_the_agent_loses_and_doubles_nothing(
    kit_broker: tuple[Kit, Mosquitto], fresh_db: str, tmp_path: Path
) -> None:
    kit, broker = kit_broker
    migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        apply_fleet(conn, Fleet.from_dict({
            "orgs": [{"id": "h", "name": "H", "kind": "hospital"}],
            "patients": [{"id": "p1", "orgs": ["h"]}],
            "hubs": [{"id": HUB, "org": "h"}],
            "devices": [{"id": ADDR, "hub": HUB, "patient": "p1"}],
        }))  # fmt: skip
    settings = GatewaySettings(
        database_url=fresh_db,
        mqtt_url=f"mqtt://telehub-ingester:{PASSWORDS['telehub-ingester']}@127.0.0.1:"
        f"{kit.central_port}",
        ingester_client_id=f"ingester-{uuid.uuid4().hex[:8]}",
        reconnect_min=0.05,
        reconnect_max=0.3,
        device_cache_refresh=0.2,
    )
    ingester = Ingester(settings)
    gw_stop = asyncio.Event()
    gw = asyncio.create_task(ingester.run(gw_stop))
    world = SimTime(speed=4.0)
    radio = SimulatedRadio(world=world)
    radio.add(PulseOximeter(ADDR, Physiology(Profile.NORMAL, 7), world=world))
    data_dir = tmp_path / "hub-data"
    old = kit.cert_for(HUB)
    try:
        await wait_for_async(lambda: ingester.connected)
        first = await _run_for(_hub_config(kit, old, data_dir), radio, 4.0)
        # rotation: a new key made on the hub, a new certificate; the agent restarts on it
        new = kit.cert_for(HUB)
        parts: list[AgentParts] = []
        stop = asyncio.Event()
        agent = asyncio.create_task(
            run_agent(_hub_config(kit, new, data_dir), radio, stop=stop, parts=parts)
        )
        await asyncio.sleep(3.0)
        # revocation of the old certificate, with the kick of live sessions: the agent, on its
        # new certificate, is disconnected too and comes straight back
        from cryptography import x509

        kit.hub_ca.revoke(x509.load_pem_x509_certificate(old[0].read_bytes()))
        broker_control.install_crl(
            kit.hub_ca.crl_path,
            kit.directory / "certs" / "hub-ca.crl",
            broker.proc.pid if broker.proc else None,
        )
        await broker_control.kick(
            f"mqtt://telehub-admin:{PASSWORDS['telehub-admin']}@127.0.0.1:{kit.central_port}",
            HUB,
        )
        await asyncio.sleep(3.0)
        radio.remove(ADDR)  # the device goes away; the hub delivers what it holds
        outbox = parts[0].outbox
        await wait_for_async(lambda: outbox.stats().pending == 0, 30)
        stop.set()
        await asyncio.wait_for(agent, 30)
        second = parts[0]
    finally:
        gw_stop.set()
        await asyncio.wait_for(gw, 15)
    made = first.state.counters["readings.new"] + second.state.counters["readings.new"]
    assert made >= 15, "the stream was too short to prove anything"
    with psycopg.connect(fresh_db) as conn:
        n, keys = conn.execute(
            "SELECT count(*), count(DISTINCT key) FROM readings WHERE hub_id = %s", (HUB,)
        ).fetchone() or (0, 0)
    assert (n, keys) == (made, made)
    assert first.state.counters["readings.new"] > 0 and second.state.counters["readings.new"] > 0
    # the kick really cut the rotated agent's session, and it came back on the new certificate
    assert second.state.counters["mqtt.connected"] >= 2
    assert pub(kit.tls_args(old), contract.readings_topic(HUB), "revoked").returncode != 0


async def wait_for_async(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)
