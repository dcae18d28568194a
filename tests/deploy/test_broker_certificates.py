"""Per-hub X.509 identity on the shipped hub listener (mTLS, CN = username = client id, CRL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.identity import generate_key_and_csr
from telehub.fleetca import DynSec, EnrolError, FleetCA, add_fleet_hub
from tests.deploy.broker_kit import Kit, Sub, make_kit, pub, refresh_crl, wait_for
from tests.fixtures.fix_mqtt import Mosquitto, MosquittoFactory
from wire import contract
from wire.mqtt import MqttClient, MqttError, MqttSettings

READINGS_A = contract.readings_topic("hub-a")


@pytest.fixture
def kit_broker(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[Kit, Mosquitto]:
    return make_kit(mosquitto, tmp_path)


@pytest.fixture
def subs() -> Iterator[list[Sub]]:
    started: list[Sub] = []
    yield started
    for s in started:
        s.close()


def _monitor(kit: Kit, subs: list[Sub]) -> Sub:
    s = Sub(kit.pw_args("monitor"), ["telehub/#"], extra=("-i", "monitor"))
    subs.append(s)
    wait_for(lambda: False, 0.5)
    return s


@pytest.mark.integration
def test_enrolled_hub_is_its_cn_and_nothing_else(
    kit_broker: tuple[Kit, Mosquitto], subs: list[Sub]
) -> None:
    kit, _ = kit_broker
    mon = _monitor(kit, subs)
    cert = kit.cert_for("hub-a")
    # Whatever username and client id it claims, the broker uses CN=hub-a for both.
    r = pub(kit.tls_args(cert), READINGS_A, "tls-own", extra=("-i", "telehub-ingester"))
    assert r.returncode == 0, r.stderr
    r = pub(
        kit.tls_args(cert), contract.readings_topic("hub-b"), "tls-forged", extra=("-u", "hub-b")
    )
    assert wait_for(lambda: f"{READINGS_A} tls-own" in mon.messages())
    assert not any("tls-forged" in m for m in mon.messages())
    log = (kit.directory.parent / "broker-0" / "mosquitto.log").read_text()
    assert "as hub-a (p5" in log and "as telehub-ingester (p5" not in log


@pytest.mark.integration
def test_no_certificate_and_foreign_ca_are_refused(
    kit_broker: tuple[Kit, Mosquitto], tmp_path: Path, subs: list[Sub]
) -> None:
    kit, _ = kit_broker
    mon = _monitor(kit, subs)
    # No certificate, even with a valid password: the TLS handshake fails.
    r = pub([*kit.tls_args(None), "-u", "hub-a", "-P", "secret-a"], READINGS_A, "nocert")
    assert r.returncode != 0
    # A certificate with the right CN from another CA.
    foreign = FleetCA.create(tmp_path / "foreign-ca", name="telehub hub-issuing CA")
    r = pub(kit.tls_args(kit.cert_for("hub-a", foreign)), READINGS_A, "foreign")
    assert r.returncode != 0
    # The server CA may sign server certificates but is not a hub issuer either.
    r = pub(kit.tls_args(kit.cert_for("hub-a", kit.server_ca)), READINGS_A, "server-ca")
    assert r.returncode != 0
    wait_for(lambda: False, 0.3)
    assert mon.messages() == []


@pytest.mark.integration
def test_revoked_certificate_is_refused_and_rotation_has_no_gap(
    kit_broker: tuple[Kit, Mosquitto], subs: list[Sub]
) -> None:
    from cryptography import x509

    kit, broker = kit_broker
    mon = _monitor(kit, subs)
    old = kit.cert_for("hub-a")
    assert pub(kit.tls_args(old), READINGS_A, "r1").returncode == 0
    # Rotation: a new key and certificate are installed before the old one is revoked.
    new = kit.cert_for("hub-a")
    assert pub(kit.tls_args(new), READINGS_A, "r2").returncode == 0
    kit.hub_ca.revoke(x509.load_pem_x509_certificate(old[0].read_bytes()))
    refresh_crl(kit, broker)
    assert pub(kit.tls_args(old), READINGS_A, "r-revoked").returncode != 0
    assert pub(kit.tls_args(new), READINGS_A, "r3").returncode == 0
    assert wait_for(lambda: len(mon.messages()) == 3)
    assert mon.messages() == [f"{READINGS_A} r{i}" for i in (1, 2, 3)]


def test_hub_key_is_private_and_csr_names_the_hub(tmp_path: Path) -> None:
    files = generate_key_and_csr("hub-0001", tmp_path / "identity")
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "identity").stat().st_mode & 0o777 == 0o700
    assert b"PRIVATE KEY" not in files.csr.read_bytes()


@pytest.mark.parametrize("hub_id", ["telehub-ingester", "telehub-ingester-2", "hub/#", "+", ""])
def test_reserved_and_wildcard_hub_ids_cannot_be_enrolled(tmp_path: Path, hub_id: str) -> None:
    with pytest.raises(EnrolError):
        DynSec(tmp_path / "d.json").add_hub(hub_id)


def test_csr_must_name_exactly_the_enrolled_hub(tmp_path: Path) -> None:
    ca = FleetCA.create(tmp_path / "ca")
    files = generate_key_and_csr("hub-a", tmp_path / "k")
    with pytest.raises(EnrolError, match="CN=hub-b"):
        ca.sign(files.csr.read_bytes(), "hub-b")
    with pytest.raises(EnrolError, match="PEM"):
        ca.sign(b"garbage", "hub-a")
    with pytest.raises(EnrolError, match="already holds a CA"):
        FleetCA.create(tmp_path / "ca")


def test_fleet_entry_is_added_once(tmp_path: Path) -> None:
    import tomllib

    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[hubs]]\nid = "hub-0001"\norg = "esbjerg"\n')
    assert add_fleet_hub(fleet, "hub-0002", "esbjerg") is True
    assert add_fleet_hub(fleet, "hub-0002", "esbjerg") is False
    with pytest.raises(EnrolError, match="already in the fleet"):
        add_fleet_hub(fleet, "hub-0002", "ouh")
    with pytest.raises(EnrolError, match="org id"):
        add_fleet_hub(fleet, "hub-0003", 'x"\n[[hubs]]')
    assert [h["id"] for h in tomllib.loads(fleet.read_text())["hubs"]] == ["hub-0001", "hub-0002"]


@pytest.mark.integration
def test_telehub_enrol_command_gives_a_working_identity(
    kit_broker: tuple[Kit, Mosquitto], tmp_path: Path, subs: list[Sub]
) -> None:
    """`telehub hub csr` on the hub, `telehub hub enrol` at the operator, then it connects."""
    import shutil
    import tomllib

    from telehub.cli import main

    kit, broker = kit_broker
    ident = tmp_path / "hub-c-identity"
    assert main(["hub", "csr", "--hub-id", "hub-c", "--dir", str(ident)]) == 0
    fleet = tmp_path / "fleet.toml"
    dynsec = kit.directory / "telehub-dynsec.json"
    out = ident / "hub.crt"
    args = ["hub", "enrol", "--ca", str(kit.hub_ca.directory), "--csr", str(ident / "hub.csr")]
    args += ["--hub-id", "hub-c", "--org", "esbjerg", "--dynsec", str(dynsec)]
    assert main([*args, "--fleet", str(fleet), "--out", str(out)]) == 0
    assert tomllib.loads(fleet.read_text())["hubs"] == [{"id": "hub-c", "org": "esbjerg"}]
    # The broker reads the dynamic-security file at start.
    broker.restart()
    mon = _monitor(kit, subs)
    topic = contract.readings_topic("hub-c")
    assert pub(kit.tls_args((out, ident / "hub.key")), topic, "c1").returncode == 0
    assert wait_for(lambda: f"{topic} c1" in mon.messages())
    # A CSR for another hub id than the one enrolled is refused with a reason.
    assert main([*args[:-4], "--hub-id", "hub-d", "--org", "esbjerg", "--out", str(out)]) == 2
    # Revocation through the command.
    assert main(["hub", "revoke", "--ca", str(kit.hub_ca.directory), "--cert", str(out)]) == 0
    shutil.copy(kit.hub_ca.crl_path, kit.directory / "certs" / "hub-ca.crl")
    refresh_crl(kit, broker)
    assert pub(kit.tls_args((out, ident / "hub.key")), topic, "c2").returncode != 0


@pytest.mark.integration
async def test_our_client_connects_with_the_hub_certificate(
    kit_broker: tuple[Kit, Mosquitto], tmp_path: Path, subs: list[Sub]
) -> None:
    """wire.mqtt presents the hub's certificate; the broker makes its CN the identity."""
    kit, _ = kit_broker
    mon = _monitor(kit, subs)
    crt, key = kit.cert_for("hub-a")
    settings = MqttSettings(
        host="localhost",
        port=kit.tls_port,
        tls=True,
        ca_file=str(kit.server_ca.cert_path),
        cert_file=str(crt),
        key_file=str(key),
    )
    client = MqttClient(settings, "hub-a")
    await client.connect()
    try:
        await client.publish(READINGS_A, b"wire-own", qos=1)
    finally:
        await client.disconnect()
    assert wait_for(lambda: f"{READINGS_A} wire-own" in mon.messages())
    # without a certificate the same client is refused at the TLS handshake
    bare = MqttClient(
        MqttSettings(
            host="localhost", port=kit.tls_port, tls=True, ca_file=str(kit.server_ca.cert_path)
        ),
        "hub-a",
    )
    with pytest.raises((MqttError, OSError)):
        await bare.connect()
