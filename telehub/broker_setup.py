"""``telehub broker setup DIR``: a private Mosquitto for a real run, in one directory.

From the shipped ``deploy/mosquitto/telehub.conf`` it writes a broker that runs as it is:
``mosquitto -c DIR/mosquitto.conf``. Everything it needs is inside DIR (mode 0700):

* ``certs/``: a broker CA and the broker's TLS certificate for ``--host``; in certificate mode
  also the fleet's hub-issuing CA certificate and its CRL;
* ``telehub-dynsec.json``: the ingester and one client per hub, each hub bound to its own client
  id and topics (the same dynamic-security roles as ``telehub hub enrol``);
* ``gateway.env``: ``TELEHUB_MQTT_URL`` with the ingester's generated password (0600);
* ``admin-password``: the broker admin's (``telehub hub revoke --kick``, loopback only);
* ``hubs/<hub>/``: what that hub needs — the ``[mqtt]`` table for its hub.toml (``mqtt.toml``)
  and its password file (password mode) or its key and certificate (certificate mode).

Certificate mode is the production shape (the hub's key should be generated on the hub with
``telehub hub csr``; here it is generated in DIR for a local run, and the command says so).
Password mode keeps TLS on the hub listener but authenticates hubs by password.
"""

from __future__ import annotations

import enum
import glob
import os
import re
import secrets
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization

from edge.identity import generate_key_and_csr
from telehub.fleetca import DynSec, EnrolError, FleetCA, check_enrolable

SHIPPED: Final = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "telehub.conf"
INGESTER: Final = "telehub-ingester"
ADMIN: Final = "telehub-admin"
_PLUGIN_RE: Final = re.compile(r"^plugin (\S*mosquitto_dynamic_security\.so)\s*$", re.M)
_MTLS_LINES: Final = ("require_certificate", "use_identity_as_username", "use_username_as_clientid")


class HubAuth(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 (the name of a mode, not a secret)
    CERTIFICATE = "certificate"


class SetupError(Exception):
    """The broker directory cannot be written as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class BrokerSetup:
    directory: Path
    conf: Path
    gateway_env: Path
    hub_dirs: dict[str, Path]
    generated_hub_keys: bool


def hubs_of_fleet(fleet_file: Path) -> list[str]:
    """The hub ids of a fleet TOML's ``[[hubs]]`` entries."""
    try:
        data = tomllib.loads(fleet_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SetupError(f"{fleet_file}: {e}") from None
    return [str(h["id"]) for h in data.get("hubs", []) if "id" in h]


def _dynsec_plugin() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + sorted(
        glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    return found[0] if found else None


def _secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def render(
    template: str,
    directory: Path,
    *,
    host: str,
    central_port: int,
    hub_port: int,
    auth: HubAuth,
    plugin: str | None,
) -> str:
    """The shipped configuration with every path inside ``directory`` and the chosen ports."""
    conf = template.replace("/etc/mosquitto/certs/", f"{directory}/certs/")
    conf = conf.replace("/etc/mosquitto/", f"{directory}/").replace(
        "/var/lib/mosquitto/", f"{directory}/data/"
    )
    if plugin is not None:
        conf = _PLUGIN_RE.sub(f"plugin {plugin}", conf)
    conf = re.sub(r"^listener 8883\s*$", f"listener {hub_port}", conf, flags=re.M)
    conf = re.sub(
        r"^listener 1883 127\.0\.0\.1\s*$", f"listener {central_port} 127.0.0.1", conf, flags=re.M
    )
    if auth is HubAuth.PASSWORD:
        # TLS stays; the hub proves who it is with its password instead of a certificate.
        kept = [
            ln
            for ln in conf.splitlines()
            if not ln.startswith(("crlfile ", "cafile ", *(f"{k} " for k in _MTLS_LINES)))
        ]
        conf = "\n".join(kept) + "\n"
    header = (
        f"# Written by `telehub broker setup` ({auth.value} hubs, broker name {host}).\n"
        f"# Run: mosquitto -c {directory}/mosquitto.conf\n"
    )
    if os.geteuid() == 0:
        header += "user root\n"  # otherwise Mosquitto drops to 'mosquitto', who cannot read DIR
    return header + conf


def setup(
    directory: Path,
    hubs: list[str],
    *,
    auth: HubAuth = HubAuth.CERTIFICATE,
    host: str = "localhost",
    central_port: int = 1883,
    hub_port: int = 8883,
    template: Path = SHIPPED,
) -> BrokerSetup:
    if not hubs:
        raise SetupError("no hubs: give --hub ID (repeatable) or --fleet FILE with [[hubs]]")
    for hub in hubs:
        try:
            check_enrolable(hub)
        except EnrolError as e:
            raise SetupError(str(e)) from None
    if len(set(hubs)) != len(hubs):
        raise SetupError("a hub id is given twice")
    if (directory / "mosquitto.conf").exists():
        raise SetupError(f"{directory} already holds a broker; refusing to overwrite it")
    try:
        text = template.read_text()
    except OSError as e:
        raise SetupError(f"the shipped configuration {template}: {e.strerror}") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    certs = directory / "certs"
    certs.mkdir(mode=0o700, exist_ok=True)
    (directory / "data").mkdir(mode=0o700, exist_ok=True)

    server_ca = FleetCA.create(directory / "server-ca", name="telehub broker CA")
    server = generate_key_and_csr(host, certs, name="server")
    cert = server_ca.sign(server.csr.read_bytes(), host, server_names=(host,))
    (certs / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    shutil.copy(server_ca.cert_path, certs / "server-ca.crt")

    dynsec = DynSec(directory / "telehub-dynsec.json")
    ingester_pw = secrets.token_urlsafe(24)
    dynsec.add_ingester(INGESTER, ingester_pw)
    _secret_file(
        directory / "gateway.env",
        f"TELEHUB_MQTT_URL=mqtt://{INGESTER}:{ingester_pw}@127.0.0.1:{central_port}",
    )
    admin_pw = secrets.token_urlsafe(24)  # for `telehub hub revoke --kick`
    dynsec.add_admin(ADMIN, admin_pw)
    _secret_file(directory / "admin-password", admin_pw)

    hub_ca = FleetCA.create(directory / "hub-ca") if auth is HubAuth.CERTIFICATE else None
    if hub_ca is not None:
        shutil.copy(hub_ca.cert_path, certs / "hub-ca.crt")
        shutil.copy(hub_ca.crl_path, certs / "hub-ca.crl")
    hub_dirs: dict[str, Path] = {}
    for hub in hubs:
        hub_dir = directory / "hubs" / hub
        hub_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lines = [
            "[mqtt]",
            f'url = "mqtts://{host}:{hub_port}"',
            f'ca_file = "{certs / "server-ca.crt"}"',
            f'username = "{hub}"',
        ]
        if hub_ca is None:
            password = secrets.token_urlsafe(24)
            dynsec.add_hub(hub, password=password)
            _secret_file(hub_dir / "mqtt-password", password)
            lines.append(f'password_file = "{hub_dir / "mqtt-password"}"')
        else:
            dynsec.add_hub(hub)
            files = generate_key_and_csr(hub, hub_dir, name="hub")
            hub_cert = hub_ca.sign(files.csr.read_bytes(), hub)
            crt = hub_dir / "hub.crt"
            crt.write_bytes(hub_cert.public_bytes(serialization.Encoding.PEM))
            lines += [f'cert_file = "{crt}"', f'key_file = "{files.key}"']
        (hub_dir / "mqtt.toml").write_text("\n".join(lines) + "\n")
        hub_dirs[hub] = hub_dir

    conf = directory / "mosquitto.conf"
    conf.write_text(
        render(
            text,
            directory,
            host=host,
            central_port=central_port,
            hub_port=hub_port,
            auth=auth,
            plugin=_dynsec_plugin(),
        )
    )
    return BrokerSetup(
        directory=directory,
        conf=conf,
        gateway_env=directory / "gateway.env",
        hub_dirs=hub_dirs,
        generated_hub_keys=hub_ca is not None,
    )
