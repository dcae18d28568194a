"""The hub's own broker identity: a private key generated on the hub and a CSR for the fleet CA.

The key never leaves the hub: ``telehub hub csr`` writes it (mode 0600) next to a certificate
signing request with ``CN=<hub id>``; the operator signs the CSR with ``telehub hub enrol`` and
copies only the certificate back. Rotation is the same two steps with a new key (see
docs/security.md, "Hubs and the broker").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: A hub id is also an MQTT username, a client id and a topic level: no wildcards, no slashes.
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class IdentityError(Exception):
    """A hub identity cannot be created or is not acceptable."""


def check_hub_id(hub_id: str) -> str:
    if not HUB_ID_RE.fullmatch(hub_id):
        raise IdentityError(
            f"hub id {hub_id!r} is not allowed: 1-64 of A-Z a-z 0-9 _ . - (no MQTT wildcards or /)"
        )
    return hub_id


@dataclass(frozen=True, slots=True)
class HubKeyFiles:
    key: Path
    csr: Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def generate_key_and_csr(hub_id: str, directory: Path, *, name: str = "hub") -> HubKeyFiles:
    """Generate a P-256 key (mode 0600) and a CSR with CN=hub id in ``directory``.

    A new key each time: rotation never reuses the old key. The previous key and certificate stay
    in place until the new certificate is installed, so the hub keeps publishing meanwhile.
    """
    check_hub_id(hub_id)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hub_id)]))
        .sign(key, hashes.SHA256())
    )
    files = HubKeyFiles(key=directory / f"{name}.key", csr=directory / f"{name}.csr")
    _write_private(
        files.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    files.csr.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return files
