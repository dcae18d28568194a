"""The fleet CA and the broker's access list: enrol, rotate and revoke hubs.

Operator side of the per-hub broker identity (docs/security.md, "Hubs and the broker"):

- ``FleetCA``: a dedicated hub-issuing CA (only it is in the hub listener's ``cafile``, so no
  other CA can mint hub identities). It signs a hub's CSR (CN = hub id, client-auth only, short
  lifetime) and keeps the CRL that Mosquitto checks (``crlfile``).
- ``DynSec``: Mosquitto's dynamic-security JSON (the plugin's ``plugin_opt_config_file``). Each
  hub gets its own client, bound to its own client id, and its own role that allows exactly its
  own topics; subscriptions (including ``$share/...``) are denied by default. Certificate
  clients skip plugin authentication but not its access control, so one file serves both.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.identity import IdentityError, check_hub_id
from wire import contract

#: Client ids and usernames that no hub may ever take (the ingesters and operators).
RESERVED_PREFIXES = ("telehub-ingester", "telehub-admin", "telehub-gateway")
HUB_CERT_DAYS = 60
#: Mosquitto's dynamic-security control API (commands in, responses out).
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
_ORG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class EnrolError(Exception):
    """A hub cannot be enrolled, rotated or revoked."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_enrolable(hub_id: str) -> str:
    try:
        check_hub_id(hub_id)
    except IdentityError as e:
        raise EnrolError(str(e)) from None
    if hub_id.lower().startswith(RESERVED_PREFIXES):
        raise EnrolError(f"hub id {hub_id!r} is reserved for central services")
    return hub_id


@dataclass(frozen=True, slots=True)
class FleetCA:
    """A CA directory: ca.key (0600), ca.crt, crl.pem, revoked.json."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def _key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def _revoked_path(self) -> Path:
        return self.directory / "revoked.json"

    @classmethod
    def create(cls, directory: Path, name: str = "telehub hub-issuing CA") -> FleetCA:
        if (directory / "ca.key").exists():
            raise EnrolError(f"{directory} already holds a CA; refusing to overwrite it")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory)
        fd = os.open(ca._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        ca._revoked_path.write_text("[]\n")
        ca.write_crl()
        return ca

    def _load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = serialization.load_pem_private_key(self._key_path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrolError("the fleet CA key is not an EC key")
        return key, x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def sign(
        self,
        csr_pem: bytes,
        hub_id: str,
        *,
        days: int = HUB_CERT_DAYS,
        server_names: tuple[str, ...] = (),
    ) -> x509.Certificate:
        """Sign a CSR whose CN must be exactly ``hub_id``; returns a client-auth certificate.

        ``server_names`` (for the broker's own certificate only) makes a server-auth certificate.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as e:
            raise EnrolError(f"not a PEM certificate signing request: {e}") from None
        if not csr.is_signature_valid:
            raise EnrolError("the CSR's signature does not verify (not made with its own key)")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if [a.value for a in cns] != [hub_id] or len(csr.subject) != 1:
            raise EnrolError(f"the CSR's subject must be exactly CN={hub_id}")
        if not server_names:
            check_enrolable(hub_id)
        key, ca_cert = self._load()
        now = _now()
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]),
                critical=False,
            )
        return builder.sign(key, hashes.SHA256())

    def revoked(self) -> list[int]:
        return [int(s) for s in json.loads(self._revoked_path.read_text())]

    def revoke(self, cert: x509.Certificate) -> None:
        serials = self.revoked()
        if cert.serial_number not in serials:
            serials.append(cert.serial_number)
        self._revoked_path.write_text(json.dumps([str(s) for s in serials]) + "\n")
        self.write_crl()

    def write_crl(self, *, days: int = 7) -> Path:
        """(Re)write crl.pem; the broker reads it on start and on SIGHUP."""
        key, ca_cert = self._load()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=days))
        )
        for serial in self.revoked():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        tmp = self.crl_path.with_suffix(".tmp")
        tmp.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, self.crl_path)
        return self.crl_path


def _pbkdf2(password: str, salt: bytes, iterations: int) -> str:
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return base64.b64encode(digest).decode()


def _acl(kind: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": allow}


@dataclass(frozen=True, slots=True)
class DynSec:
    """Mosquitto dynamic-security configuration file (read by the broker at start)."""

    path: Path
    iterations: int = 101_000

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {
                "defaultACLAccess": {
                    "publishClientSend": False,
                    "publishClientReceive": False,
                    "subscribe": False,
                    "unsubscribe": True,
                },
                "clients": [],
                "groups": [],
                "roles": [],
            }
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)

    def _put(
        self,
        data: dict[str, Any],
        username: str,
        role: str,
        acls: list[dict[str, Any]],
        *,
        password: str | None,
        clientid: str | None,
    ) -> None:
        data["roles"] = [r for r in data["roles"] if r["rolename"] != role]
        data["roles"].append({"rolename": role, "acls": acls})
        client: dict[str, Any] = {"username": username, "roles": [{"rolename": role}]}
        if clientid is not None:
            client["clientid"] = clientid
        if password is None:
            # A certificate-only identity: no password can ever match this random one.
            password = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(12)
        client.update(
            password=_pbkdf2(password, salt, self.iterations),
            salt=base64.b64encode(salt).decode(),
            iterations=self.iterations,
        )
        data["clients"] = [c for c in data["clients"] if c["username"] != username]
        data["clients"].append(client)

    def add_hub(self, hub_id: str, *, password: str | None = None) -> None:
        """The hub's own client (bound to client id = hub id) and role (its own topics only)."""
        check_enrolable(hub_id)
        data = self._read()
        acls = [
            _acl("publishClientSend", contract.readings_topic(hub_id)),
            _acl("publishClientSend", contract.status_topic(hub_id)),
            _acl("subscribeLiteral", contract.receipts_topic(hub_id)),
            _acl("publishClientReceive", contract.receipts_topic(hub_id)),
            _acl("unsubscribeLiteral", contract.receipts_topic(hub_id)),
        ]
        self._put(data, hub_id, f"hub:{hub_id}", acls, password=password, clientid=hub_id)
        self._write(data)

    def remove_hub(self, hub_id: str) -> None:
        data = self._read()
        data["clients"] = [c for c in data["clients"] if c["username"] != hub_id]
        data["roles"] = [r for r in data["roles"] if r["rolename"] != f"hub:{hub_id}"]
        self._write(data)

    def add_ingester(self, username: str, password: str, *, group: str = "telehub") -> None:
        """The ingester: reads every hub's readings and status (also via $share/<group>/...)."""
        data = self._read()
        acls = []
        for f in (contract.READINGS_FILTER, contract.STATUS_FILTER):
            acls += [
                _acl("subscribePattern", f),
                _acl("subscribePattern", f"$share/{group}/{f}"),
                _acl("publishClientReceive", f),
            ]
        acls.append(_acl("publishClientSend", contract.receipts_topic("+")))
        self._put(data, username, "ingester", acls, password=password, clientid=None)
        self._write(data)

    def add_admin(self, username: str, password: str) -> None:
        """The operator's broker admin: may use the dynamic-security control API (kick or
        remove a revoked hub's live session, ``telehub hub revoke --kick``), nothing else."""
        data = self._read()
        acls = [
            _acl("publishClientSend", CONTROL_TOPIC),
            _acl("subscribeLiteral", CONTROL_RESPONSE_TOPIC),
            _acl("publishClientReceive", CONTROL_RESPONSE_TOPIC),
        ]
        self._put(data, username, "admin", acls, password=password, clientid=None)
        self._write(data)

    def add_monitor(self, username: str, password: str) -> None:
        """A read-only operator (troubleshooting): may subscribe to and receive every topic."""
        data = self._read()
        acls = [_acl("subscribePattern", "#"), _acl("publishClientReceive", "#")]
        self._put(data, username, "monitor", acls, password=password, clientid=None)
        self._write(data)


def add_fleet_hub(fleet_file: Path, hub_id: str, org: str) -> bool:
    """Append a ``[[hubs]]`` entry to the fleet file unless the hub is already there."""
    check_enrolable(hub_id)
    if not _ORG_RE.fullmatch(org):
        raise EnrolError(f"org id {org!r} is not allowed: 1-64 of a-z 0-9 _ -")
    text = fleet_file.read_text() if fleet_file.exists() else ""
    existing = tomllib.loads(text).get("hubs", []) if text else []
    for h in existing:
        if h.get("id") == hub_id:
            if h.get("org") != org:
                raise EnrolError(f"{hub_id} is already in the fleet for org {h.get('org')!r}")
            return False
    sep = "" if not text or text.endswith("\n") else "\n"
    fleet_file.write_text(f'{text}{sep}\n[[hubs]]\nid = "{hub_id}"\norg = "{org}"\n')
    return True
