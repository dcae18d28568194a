"""The real parts the chaos matrix runs and breaks, all on this machine.

* PostgreSQL: an :class:`tests.chaos.postgres.EmbeddedPostgres` of its own (stopped and started
  by the "restart" fault), or a fresh database on the machine's server (``--postgres shared``;
  the restart fault then terminates the database's backends instead). The ingester reaches it
  through a :class:`tests.fixtures.fix_proxy.TcpProxy` (the "cut" fault); the driver's own
  queries go direct.
* Mosquitto: a private :class:`tests.fixtures.fix_mqtt.Mosquitto` with persistence on (the
  deployment's settings, ``deploy/mosquitto/telehub.conf``), SIGKILLed and restarted.
* The ingester: ``python -m telehub.cli gateway --ingest-only`` with ``TELEHUB_*`` settings.
* Hubs: ``python -m tests.chaos.hub`` processes (real Outbox + Uplink), each connected to the
  broker through a TCP proxy of its own (the "network cut" fault), each with its own data dir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg

from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from tests.chaos.hub import NEXT, device_of, patient_of
from tests.chaos.postgres import EmbeddedPostgres
from tests.fixtures.fix_mqtt import Mosquitto
from tests.fixtures.fix_proxy import TcpProxy

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]

#: The deployment's persistence and queue settings (deploy/mosquitto/telehub.conf). A SIGKILL
#: loses whatever the broker had not autosaved: the edge outbox and receipts must cover that.
BROKER_CONFIG = """allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 30
max_queued_messages 100000
max_inflight_messages 100
"""


@dataclass
class Proc:
    """A child process with its log file; restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logfile: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    def start(self) -> None:
        if self._log is None:
            self._log = open(self.logfile, "ab")  # noqa: SIM115 - kept open across restarts
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not go; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs: killed", self.name, timeout)
                self.kill()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_count(self, text: str) -> int:
        try:
            return self.logfile.read_text(errors="replace").count(text)
        except FileNotFoundError:
            return 0

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@dataclass
class Hub:
    hub_id: str
    quota: int
    data_dir: Path
    proxy: TcpProxy
    proc: Proc

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    def snapshot(self) -> tuple[int, int, int]:
        """(committed readings, rows in the outbox, rows in flight), read from the hub's own
        SQLite file (WAL: a concurrent reader does not disturb the hub)."""
        if not self.outbox_path.exists():
            return 0, 0, 0
        with contextlib.closing(sqlite3.connect(self.outbox_path, timeout=10)) as db:
            row = db.execute("SELECT value FROM state WHERE name = ?", (NEXT,)).fetchone()
            pending, in_flight = db.execute("SELECT count(*), count(msg_id) FROM outbox").fetchone()
        return (int(row[0]) if row else 0), int(pending), int(in_flight)

    def local_dead_letters(self) -> int:
        if not self.outbox_path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.outbox_path, timeout=10)) as db:
            return int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


@dataclass
class ClusterConfig:
    workdir: Path
    readings: int
    hubs: int
    devices: int
    rate: float  # readings per second, all hubs together
    batch: int
    window: int
    receipt_timeout: float
    postgres: str  # "embedded" | "shared"
    admin_dsn: str


@dataclass
class Cluster:
    cfg: ClusterConfig
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    pg: EmbeddedPostgres | None = None
    shared_db: str | None = None
    dsn: str = ""  # direct (driver)
    pg_proxy: TcpProxy | None = None
    broker: Mosquitto | None = None
    ingester: Proc | None = None
    hubs: list[Hub] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- set-up -----------------------------------------------------------------------------------
    def start(self) -> None:
        c = self.cfg
        c.workdir.mkdir(parents=True, exist_ok=True)
        self._start_postgres()
        self._provision()
        assert self.pg_proxy is not None
        self.broker = Mosquitto(c.workdir / "mosquitto", BROKER_CONFIG)
        self.broker.start()
        self.ingester = Proc(
            "ingester",
            [
                sys.executable,
                "-m",
                "telehub.cli",
                "--log-level",
                "INFO",
                "gateway",
                "--ingest-only",
            ],
            self._ingester_env(),
            c.workdir / "ingester.log",
        )
        self.ingester.start()
        self.wait_ingester_connected(1, 60)
        for i in range(c.hubs):
            self.hubs.append(self._hub(i))
        for h in self.hubs:
            h.proc.start()

    def _start_postgres(self) -> None:
        c = self.cfg
        if c.postgres == "embedded":
            self.pg = EmbeddedPostgres(c.workdir / "postgres")
            self.pg.init()
            self.pg.start()
            with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE chaos")
            self.dsn = self.pg.dsn("chaos")
            target = ("127.0.0.1", self.pg.port)
        else:
            self.shared_db = f"telehub_chaos_{self.run_id}"
            with psycopg.connect(c.admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.shared_db}"')
            self.dsn = psycopg.conninfo.make_conninfo(c.admin_dsn, dbname=self.shared_db)
            info = psycopg.conninfo.conninfo_to_dict(self.dsn)
            target = (str(info.get("host") or "127.0.0.1"), int(str(info.get("port") or 5432)))
        self.pg_proxy = TcpProxy(target).start()

    @property
    def proxied_dsn(self) -> str:
        assert self.pg_proxy is not None
        return psycopg.conninfo.make_conninfo(
            self.dsn, host="127.0.0.1", port=str(self.pg_proxy.port)
        )

    def hub_ids(self) -> list[str]:
        return [f"chaos-{self.run_id}-h{i:02d}" for i in range(self.cfg.hubs)]

    def _provision(self) -> None:
        """Schema, and every hub, patient and device bound (else the ingester dead-letters)."""
        c = self.cfg
        migrate(self.dsn)
        hubs = self.hub_ids()
        fleet = Fleet.from_dict(
            {
                "orgs": [{"id": "chaos", "name": "Chaos", "kind": "operator"}],
                "patients": [{"id": patient_of(h), "orgs": ["chaos"]} for h in hubs],
                "hubs": [{"id": h, "org": "chaos"} for h in hubs],
                "devices": [
                    {"id": device_of(h, d, c.devices), "hub": h, "patient": patient_of(h)}
                    for h in hubs
                    for d in range(c.devices)
                ],
            }
        )
        with psycopg.connect(self.dsn) as conn:
            apply_fleet(conn, fleet)

    def _ingester_env(self) -> dict[str, str]:
        assert self.broker is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHUB_")}
        env.update(
            {
                "TELEHUB_DATABASE_URL": self.proxied_dsn,
                "TELEHUB_MQTT_URL": self.broker.url,
                "TELEHUB_INGESTER_CLIENT_ID": f"chaos-ingester-{self.run_id}",
                "TELEHUB_SESSION_EXPIRY": "3600",
                "TELEHUB_RECONNECT_MIN": "0.2",
                "TELEHUB_RECONNECT_MAX": "2",
                "TELEHUB_DB_TIMEOUT": "15",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _hub(self, i: int) -> Hub:
        c = self.cfg
        assert self.broker is not None
        hub_id = self.hub_ids()[i]
        quota = c.readings // c.hubs + (1 if i < c.readings % c.hubs else 0)
        data_dir = c.workdir / "hubs" / hub_id
        data_dir.mkdir(parents=True, exist_ok=True)
        proxy = TcpProxy(("127.0.0.1", self.broker.port)).start()
        argv = [
            sys.executable,
            "-m",
            "tests.chaos.hub",
            "--hub-id",
            hub_id,
            "--url",
            proxy.url(),
            "--data-dir",
            str(data_dir),
            "--quota",
            str(quota),
            "--rate",
            f"{c.rate / c.hubs:.3f}",
            "--devices",
            str(c.devices),
            "--batch",
            str(c.batch),
            "--window",
            str(c.window),
            "--receipt-timeout",
            str(c.receipt_timeout),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return Hub(
            hub_id, quota, data_dir, proxy, Proc(hub_id, argv, env, c.workdir / f"{hub_id}.log")
        )

    # -- observation ------------------------------------------------------------------------------
    def wait_ingester_connected(self, count: int, timeout: float) -> bool:
        """Wait until the ingester's log says it connected ``count`` times in all."""
        assert self.ingester is not None
        deadline = time.monotonic() + timeout
        while self.ingester.log_count("ingester connected") < count:
            if time.monotonic() > deadline:
                return False
            if not self.ingester.alive:
                raise RuntimeError(f"ingester exited:\n{self.ingester.log_tail()}")
            time.sleep(0.1)
        return True

    def stored(self) -> int | None:
        """Rows in readings (None while the database is unreachable)."""
        try:
            with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                row = conn.execute("SELECT count(*) FROM readings").fetchone()
        except psycopg.OperationalError:
            return None
        assert row is not None
        return int(row[0])

    def sent(self) -> int:
        return sum(h.snapshot()[0] for h in self.hubs)

    def outbox_totals(self) -> tuple[int, int, int]:
        """(committed, in outboxes, in flight) over all hubs."""
        snaps = [h.snapshot() for h in self.hubs]
        return tuple(sum(s[i] for s in snaps) for i in range(3))  # type: ignore[return-value]

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn, connect_timeout=10) as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def hub_counters(self, timeout: float = 15.0) -> dict[str, int]:
        """The hubs' own counters (since each hub process last started), summed, from the final
        statuses the gateway recorded (call after :meth:`stop_hubs`: a clean stop publishes an
        ``offline`` status with the counters). Empty if the statuses did not all arrive."""
        ids = [h.hub_id for h in self.hubs]
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(
                "SELECT status FROM hubs WHERE hub_id = ANY(%s) AND state = 'offline'", (ids,)
            )
            if len(rows) == len(ids):
                break
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.2)
        total: dict[str, int] = {}
        for (status,) in rows:
            counters = status.get("counters", {}) if isinstance(status, dict) else {}
            for k, v in counters.items():
                total[k] = total.get(k, 0) + int(v)
        return total

    # -- tear-down --------------------------------------------------------------------------------
    def stop_hubs(self) -> None:
        for h in self.hubs:
            h.proc.stop()

    def close(self) -> None:
        for h in self.hubs:
            h.proc.close()
            h.proxy.close()
        if self.ingester is not None:
            self.ingester.close()
        if self.broker is not None:
            self.broker.kill()
        if self.pg_proxy is not None:
            self.pg_proxy.close()
        if self.pg is not None:
            self.pg.stop_quietly()
        if self.shared_db is not None:
            with (
                contextlib.suppress(psycopg.Error),
                psycopg.connect(self.cfg.admin_dsn, autocommit=True) as conn,
            ):
                conn.execute(f'DROP DATABASE IF EXISTS "{self.shared_db}" WITH (FORCE)')
