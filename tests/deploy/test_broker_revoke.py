"""Revoking a hub that is connected right now, on the shipped Mosquitto configuration.

A CRL reload (SIGHUP) refuses new connections with the revoked certificate but leaves the live
session up; ``telehub hub revoke --kick`` ends it through the dynamic-security control API, the
revoked certificate cannot come back, and another hub is not disturbed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telehub.cli import main
from tests.deploy.broker_kit import PASSWORDS, Kit, Sub, make_kit, pub, refresh_crl, wait_for
from tests.fixtures.fix_mqtt import Mosquitto, MosquittoFactory
from wire import contract

pytestmark = pytest.mark.integration


@pytest.fixture
def kit_broker(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[Kit, Mosquitto]:
    return make_kit(mosquitto, tmp_path)


@pytest.fixture
def subs() -> Iterator[list[Sub]]:
    started: list[Sub] = []
    yield started
    for s in started:
        s.close()


def _live(kit: Kit, hub: str, cert: tuple[Path, Path], subs: list[Sub]) -> Sub:
    """The hub's own receipts subscription, kept open (as the edge agent keeps its session)."""
    s = Sub(kit.tls_args(cert), [contract.receipts_topic(hub)], extra=("-k", "5"))
    subs.append(s)
    assert wait_for(lambda: any("SUBACK" in ln for ln in s.lines()) or s.alive(), 3)
    wait_for(lambda: False, 0.5)
    assert s.alive()
    return s


def test_a_crl_reload_leaves_a_live_session_and_kick_ends_it(
    kit_broker: tuple[Kit, Mosquitto], subs: list[Sub], tmp_path: Path
) -> None:
    kit, broker = kit_broker
    cert_a, cert_b = kit.cert_for("hub-a"), kit.cert_for("hub-b")
    live_a, live_b = _live(kit, "hub-a", cert_a, subs), _live(kit, "hub-b", cert_b, subs)
    # the revocation alone (CRL + SIGHUP): refused for new connections, the live one stays up
    from cryptography import x509

    kit.hub_ca.revoke(x509.load_pem_x509_certificate(cert_a[0].read_bytes()))
    refresh_crl(kit, broker)
    assert pub(kit.tls_args(cert_a), contract.readings_topic("hub-a"), "new").returncode != 0
    wait_for(lambda: False, 1.0)
    assert live_a.alive(), "Mosquitto now drops live sessions on a CRL reload: revisit --kick"
    # telehub hub revoke --kick: the live session ends within seconds, hub-b stays
    pwfile = tmp_path / "admin-pw"
    pwfile.write_text(PASSWORDS["telehub-admin"] + "\n")
    rc = main([
        "hub", "revoke", "--ca", str(kit.hub_ca.directory), "--cert", str(cert_a[0]),
        "--crl-to", str(kit.directory / "certs" / "hub-ca.crl"),
        "--broker-pid", str(broker.proc.pid if broker.proc else 0),
        "--kick", f"mqtt://telehub-admin@127.0.0.1:{kit.central_port}",
        "--admin-password-file", str(pwfile),
    ])  # fmt: skip
    assert rc == 0
    assert wait_for(lambda: not live_a.alive(), 5), "the revoked hub's session is still up"
    wait_for(lambda: False, 1.0)
    assert live_b.alive()
    assert pub(kit.tls_args(cert_a), contract.readings_topic("hub-a"), "again").returncode != 0
    assert pub(kit.tls_args(cert_b), contract.readings_topic("hub-b"), "b-ok").returncode == 0


def test_kick_with_remove_deletes_a_password_hub(
    kit_broker: tuple[Kit, Mosquitto], subs: list[Sub], tmp_path: Path
) -> None:
    import asyncio

    from telehub import broker_control

    kit, _ = kit_broker
    s = Sub(kit.pw_args("hub-a"), [contract.receipts_topic("hub-a")], extra=("-i", "hub-a"))
    subs.append(s)
    wait_for(lambda: False, 0.8)
    assert s.alive()
    url = f"mqtt://telehub-admin:{PASSWORDS['telehub-admin']}@127.0.0.1:{kit.central_port}"
    asyncio.run(broker_control.kick(url, "hub-a", remove=True))
    assert wait_for(lambda: not s.alive(), 5)
    r = pub(kit.pw_args("hub-a"), contract.readings_topic("hub-a"), "x", extra=("-i", "hub-a"))
    assert r.returncode != 0  # its password no longer works


def test_kick_refuses_without_admin_rights(kit_broker: tuple[Kit, Mosquitto]) -> None:
    import asyncio

    from telehub import broker_control

    kit, _ = kit_broker
    url = f"mqtt://monitor:{PASSWORDS['monitor']}@127.0.0.1:{kit.central_port}"
    with pytest.raises(broker_control.BrokerControlError):
        asyncio.run(broker_control.kick(url, "hub-a"))
