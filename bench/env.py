"""The benchmark's infrastructure: a private Mosquitto and a database of its own.

* Broker: ``mosquitto -c bench/mosquitto.conf`` (plus a listener on a spare port), started fresh
  for every phase so that no session or queue of a previous phase is left.
* Database: ``telehub_bench_<random>`` created on the machine's PostgreSQL (``--dsn``, default
  ``postgresql://postgres@127.0.0.1:5432/test``; the role must be allowed to CREATE DATABASE),
  migrated by :func:`gateway.db.migrate`, provisioned with :func:`gateway.fleet.apply_fleet`,
  dropped at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet

log = logging.getLogger(__name__)

CONF = Path(__file__).with_name("mosquitto.conf")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Tables a phase writes; emptied before each phase so every phase starts from the same state.
PHASE_TABLES = (
    "readings", "alerts", "alert_deliveries", "dead_letters",
    "event_deliveries", "alert_event", "alert_occurrences", "clinical_alerts", "adherence_slots",
    "alert_escalation_policy", "alert_escalations",
)  # fmt: skip


class BenchError(RuntimeError):
    """The benchmark cannot run here (no broker binary, no database, a phase failed)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A private Mosquitto on 127.0.0.1 (same port across restarts)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BenchError("the benchmark needs Mosquitto: apt-get install mosquitto")
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = f"listener {self.port} 127.0.0.1\n"
        if os.geteuid() == 0:
            conf += "user root\n"
        conf += CONF.read_text()
        path = self.directory / "mosquitto.conf"
        path.write_text(conf)
        with open(self.directory / "mosquitto.log", "ab") as out:
            self.proc = subprocess.Popen([binary, "-c", str(path)], stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"mosquitto exited at start: see {self.directory / 'mosquitto.log'}"
                )
            if _port_open(self.port):
                return
            time.sleep(0.02)
        raise BenchError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def broker(directory: Path) -> Iterator[Broker]:
    b = Broker(directory)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@contextlib.contextmanager
def database(admin_dsn: str, fleet: Fleet) -> Iterator[str]:
    """A migrated, provisioned database of the benchmark's own; dropped afterwards."""
    name = f"telehub_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.OperationalError as exc:
        raise BenchError(f"cannot create a database at {admin_dsn}: {exc}") from exc
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        mode = migrate(dsn)
        with psycopg.connect(dsn) as conn:
            apply_fleet(conn, fleet)
            conn.execute("ANALYZE")
        log.info("database %s ready (%s, %d hubs)", name, mode, len(fleet.hubs))
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def reset(dsn: str) -> None:
    """Empty what the phases write (readings, alerts, deliveries, dead letters)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(PHASE_TABLES)}".encode())
        conn.execute("CHECKPOINT")


def storage_mode(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('readings')"
        ).fetchone()
    return "partitioned" if row is not None and row[0] == "p" else "timescaledb"


def count_readings(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0
