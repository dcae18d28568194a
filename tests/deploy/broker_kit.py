"""A private Mosquitto running the shipped deploy/mosquitto/telehub.conf, and CLI helpers.

The shipped file is rendered with test paths and ports only; every security option is the
shipped one. ``TELEHUB_TEST_BROKER_CONF`` may point at another config (e.g. an older release's)
to show that the attack tests fail there; a config with ``acl_file``/``password_file`` gets
those files made from the same users.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge.identity import generate_key_and_csr
from telehub.fleetca import DynSec, FleetCA
from tests.fixtures.fix_mqtt import Mosquitto, MosquittoFactory

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "mosquitto" / "telehub.conf"
PASSWORDS = {
    "hub-a": "secret-a",
    "hub-b": "secret-b",
    "telehub-ingester": "secret-i",
    "monitor": "secret-m",
    "telehub-admin": "secret-admin",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (Debian package mosquitto-clients) is needed for the broker tests")
    return path


@dataclass
class Kit:
    directory: Path
    central_port: int
    tls_port: int
    hub_ca: FleetCA
    server_ca: FleetCA
    proc: object = None
    issued: int = 0

    def cert_for(self, hub_id: str, ca: FleetCA | None = None) -> tuple[Path, Path]:
        self.issued += 1
        files = generate_key_and_csr(
            hub_id, self.directory / "hubs" / hub_id, name=f"hub-{self.issued}"
        )
        cert = (ca or self.hub_ca).sign(files.csr.read_bytes(), hub_id)
        crt = files.key.with_suffix(".crt")
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return crt, files.key

    def tls_args(self, cert: tuple[Path, Path] | None) -> list[str]:
        args = [
            "-h",
            "localhost",
            "-p",
            str(self.tls_port),
            "--cafile",
            str(self.server_ca.cert_path),
        ]
        if cert is not None:
            args += ["--cert", str(cert[0]), "--key", str(cert[1])]
        return args

    def pw_args(self, user: str, password: str | None = None) -> list[str]:
        pw = PASSWORDS[user] if password is None else password
        return ["-h", "127.0.0.1", "-p", str(self.central_port), "-u", user, "-P", pw]


def render(conf: str, kit_dir: Path, central_port: int, tls_port: int) -> str:
    conf = conf.replace("/etc/mosquitto/certs/", f"{kit_dir}/certs/")
    conf = conf.replace("/etc/mosquitto/", f"{kit_dir}/").replace(
        "/var/lib/mosquitto/", f"{kit_dir}/"
    )
    conf = re.sub(r"^listener 8883\s*$", f"listener {tls_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(
        r"^listener 1883 127\.0\.0\.1\s*$", f"listener {central_port} 127.0.0.1", conf, flags=re.M
    )
    return conf


def prepare(kit_dir: Path, conf_text: str) -> None:
    certs = kit_dir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    dynsec = DynSec(kit_dir / "telehub-dynsec.json", iterations=1000)
    dynsec.add_ingester("telehub-ingester", PASSWORDS["telehub-ingester"])
    dynsec.add_monitor("monitor", PASSWORDS["monitor"])
    dynsec.add_admin("telehub-admin", PASSWORDS["telehub-admin"])
    for hub in ("hub-a", "hub-b"):
        dynsec.add_hub(hub, password=PASSWORDS[hub])
    if "password_file" in conf_text:
        passwd = kit_dir / "telehub.passwd"
        for i, (user, pw) in enumerate(PASSWORDS.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run(
                [tool("mosquitto_passwd"), *flags, "-b", str(passwd), user, pw], check=True
            )
    if "acl_file" in conf_text and not (kit_dir / "telehub.acl").exists():
        src = Path(os.environ.get("TELEHUB_TEST_BROKER_ACL", ""))
        shutil.copy(src, kit_dir / "telehub.acl")


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def make_kit(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[Kit, Mosquitto]:
    """Start the broker on the shipped (or TELEHUB_TEST_BROKER_CONF) configuration."""
    from tests.fixtures.fix_mqtt import free_port

    conf_path = Path(os.environ.get("TELEHUB_TEST_BROKER_CONF", str(SHIPPED)))
    kit_dir = tmp_path / "kit"
    kit = Kit(
        directory=kit_dir,
        central_port=free_port(),
        tls_port=free_port(),
        hub_ca=FleetCA.create(tmp_path / "hub-ca"),
        server_ca=FleetCA.create(tmp_path / "server-ca", name="telehub broker CA"),
    )
    text = conf_path.read_text()
    prepare(kit_dir, text)
    certs = kit_dir / "certs"
    server = generate_key_and_csr("localhost", certs, name="server")
    cert = kit.server_ca.sign(server.csr.read_bytes(), "localhost", server_names=("localhost",))
    (certs / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for name in ("hub-ca.crt", "ca.crt"):
        shutil.copy(kit.hub_ca.cert_path, certs / name)
    shutil.copy(kit.hub_ca.crl_path, certs / "hub-ca.crl")
    broker = mosquitto(render(text, kit_dir, kit.central_port, kit.tls_port))
    kit.proc = broker
    return kit, broker


def refresh_crl(kit: Kit, broker) -> None:  # type: ignore[no-untyped-def]
    import signal

    shutil.copy(kit.hub_ca.crl_path, kit.directory / "certs" / "hub-ca.crl")
    broker.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)


class Sub:
    """A mosquitto_sub process printing ``topic payload`` lines."""

    def __init__(self, args: list[str], topics: list[str], *, extra: tuple[str, ...] = ()) -> None:
        cmd = [tool("mosquitto_sub"), "-V", "5", "-v", "-q", "1", *extra, *args]
        for t in topics:
            cmd += ["-t", t]
        self.log = Path(f"/tmp/telehub-sub-{os.getpid()}-{id(self)}.log")
        self._f = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._f, stderr=subprocess.STDOUT)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def messages(self) -> list[str]:
        return [ln for ln in self.lines() if ln.startswith("telehub/")]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._f.close()
        self.log.unlink(missing_ok=True)


def pub(
    args: list[str],
    topic: str,
    payload: str | None = None,
    *,
    file: Path | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    cmd = [tool("mosquitto_pub"), "-V", "5", "-q", "1", *extra, *args, "-t", topic]
    cmd += ["-f", str(file)] if file is not None else ["-m", payload or ""]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=15)
