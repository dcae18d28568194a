"""The faults of the chaos matrix. Each is applied while readings flow, waits for its own recovery
step (restart, resume) and returns a :class:`FaultRecord` with the evidence that it happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from tests.chaos.cluster import Cluster, Hub


@dataclass
class FaultRecord:
    name: str
    at: float  # seconds since the run started
    detail: str
    happened: bool  # the evidence that the fault really took place (a PID changed, ...)
    sent: int = 0
    stored: int | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def line(self, index: int, total: int) -> str:
        stored = "?" if self.stored is None else str(self.stored)
        verdict = "ok" if self.happened else "NOT APPLIED"
        return (
            f"fault {index}/{total} {self.name}: t={self.at:.1f}s {self.detail}; "
            f"sent={self.sent} stored={stored} [{verdict}]"
        )


@dataclass
class Timing:
    ingester_down: float = 1.0  # seconds between SIGKILL and restart
    broker_down: float = 1.0
    pg_down: float = 2.0
    pg_cut: float = 3.0
    net_cut: float = 5.0
    hub_down: float = 0.5


Fault = Callable[[Cluster, Timing, int], FaultRecord]


def _record(
    cluster: Cluster, name: str, t0: float, detail: str, happened: bool, **extra: int
) -> FaultRecord:
    return FaultRecord(name, t0, detail, happened, cluster.sent(), cluster.stored(), dict(extra))


def ingester_sigkill(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """SIGKILL the ingester (whatever batch it holds is uncommitted or unacknowledged) and start
    a new one with the same client id (the broker kept its persistent session)."""
    ing = cluster.ingester
    assert ing is not None
    t0 = cluster.elapsed()
    connected = ing.log_count("ingester connected")
    old = ing.pid
    ing.kill()
    time.sleep(timing.ingester_down)
    ing.start()
    up = cluster.wait_ingester_connected(connected + 1, 60)
    return _record(
        cluster,
        "ingester-sigkill",
        t0,
        f"pid {old}->{ing.pid}, down {timing.ingester_down:.1f}s, reconnected={up}",
        old != ing.pid and up,
        pid_before=old or 0,
        pid_after=ing.pid or 0,
    )


def broker_sigkill(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """SIGKILL Mosquitto (it loses whatever it had not autosaved) and start it again on the same
    port and persistence directory."""
    broker = cluster.broker
    assert broker is not None and broker.proc is not None
    t0 = cluster.elapsed()
    connected = cluster.ingester.log_count("ingester connected") if cluster.ingester else 0
    old = broker.proc.pid
    broker.kill()
    time.sleep(timing.broker_down)
    broker.start()
    up = cluster.wait_ingester_connected(connected + 1, 60)
    return _record(
        cluster,
        "broker-sigkill",
        t0,
        f"mosquitto pid {old}->{broker.proc.pid}, down {timing.broker_down:.1f}s, "
        f"ingester reconnected={up}",
        old != broker.proc.pid and up,
        pid_before=old,
        pid_after=broker.proc.pid,
    )


def postgres_restart(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """Embedded server: ``pg_ctl stop -m immediate`` (a crash: no checkpoint, WAL recovery on
    start) and start again. Shared server (cannot be restarted): terminate every backend of the
    chaos database instead."""
    t0 = cluster.elapsed()
    connected = cluster.ingester.log_count("ingester connected") if cluster.ingester else 0
    if cluster.pg is not None:
        old = cluster.pg.pid
        cluster.pg.stop("immediate")
        time.sleep(timing.pg_down)
        cluster.pg.start()
        new = cluster.pg.pid
        up = cluster.wait_ingester_connected(connected + 1, 60)
        return _record(
            cluster,
            "postgres-restart",
            t0,
            f"postmaster pid {old}->{new} (stop -m immediate), down "
            f"{timing.pg_down:.1f}s, ingester reconnected={up}",
            old is not None and new is not None and old != new and up,
            pid_before=old or 0,
            pid_after=new or 0,
        )
    with psycopg.connect(cluster.cfg.admin_dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (cluster.shared_db,),
        ).fetchall()
    up = cluster.wait_ingester_connected(connected + 1, 60)
    return _record(
        cluster,
        "postgres-terminate",
        t0,
        f"{len(rows)} backend(s) terminated, ingester reconnected={up}",
        len(rows) > 0 and up,
    )


def postgres_cut(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """Sever the ingester's database connections at the TCP proxy and refuse new ones for a
    while (a network partition between ingester and database)."""
    proxy = cluster.pg_proxy
    assert proxy is not None
    _wait(lambda: proxy.connections > 0, 30)
    t0 = cluster.elapsed()
    connected = cluster.ingester.log_count("ingester connected") if cluster.ingester else 0
    cut = proxy.partition()
    time.sleep(timing.pg_cut)
    proxy.resume()
    up = cluster.wait_ingester_connected(connected + 1, 60)
    return _record(
        cluster,
        "postgres-cut",
        t0,
        f"{cut} connection(s) cut, refused {timing.pg_cut:.1f}s, ingester reconnected={up}",
        cut > 0 and up,
        cut=cut,
    )


def hub_sigkill(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """SIGKILL a hub process while it has a batch in flight (published, no receipt yet), and
    restart it on the same data directory."""
    t0 = cluster.elapsed()
    candidates = [h for h in cluster.hubs if h.proc.alive]
    victim: Hub | None = None
    in_flight = 0
    deadline = time.monotonic() + 30
    i = n
    while victim is None and time.monotonic() < deadline and candidates:
        h = candidates[i % len(candidates)]
        i += 1
        committed, _, flying = h.snapshot()
        if flying > 0 and committed < h.quota:
            victim, in_flight = h, flying
        else:
            time.sleep(0.005)
    if victim is None:  # nothing in flight anywhere: kill one anyway (still a crash)
        victim = candidates[n % len(candidates)]
    old = victim.proc.pid
    victim.proc.kill()
    time.sleep(timing.hub_down)
    victim.proc.start()
    return _record(
        cluster,
        "hub-sigkill",
        t0,
        f"{victim.hub_id} pid {old}->{victim.proc.pid} with {in_flight} reading(s) in flight",
        old != victim.proc.pid and in_flight > 0,
        in_flight=in_flight,
        pid_before=old or 0,
        pid_after=victim.proc.pid or 0,
    )


def network_cut(cluster: Cluster, timing: Timing, n: int) -> FaultRecord:
    """Cut every hub's link to the broker at its TCP proxy and hold new connections unanswered for
    a while (packets vanish): the broker publishes the hubs' last wills; the ingester records them
    (``hubs.state = 'offline'``); the hubs reconnect when the link is back."""
    t0 = cluster.elapsed()
    before = [h.proxy.accepted for h in cluster.hubs]
    cut = sum(h.proxy.partition(hold=True) for h in cluster.hubs)
    hub_ids = [h.hub_id for h in cluster.hubs]
    offline_seen = 0
    deadline = time.monotonic() + timing.net_cut
    while time.monotonic() < deadline:
        try:
            rows = cluster.query(
                "SELECT count(*) FROM hubs WHERE hub_id = ANY(%s) AND state = 'offline'",
                (hub_ids,),
            )
            offline_seen = max(offline_seen, int(str(rows[0][0])))
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    for h in cluster.hubs:
        h.proxy.resume()
    back = _wait(
        lambda: all(h.proxy.accepted > b for h, b in zip(cluster.hubs, before, strict=True)), 60
    )
    return _record(
        cluster,
        "network-cut",
        t0,
        f"{cut} hub connection(s) cut, down {timing.net_cut:.1f}s, "
        f"offline recorded for {offline_seen}/{len(hub_ids)} hubs, reconnected={back}",
        cut >= len(hub_ids) and back,
        cut=cut,
        offline=offline_seen,
    )


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


FAULTS: dict[str, Fault] = {
    "ingester": ingester_sigkill,
    "broker": broker_sigkill,
    "postgres-restart": postgres_restart,
    "postgres-cut": postgres_cut,
    "hub": hub_sigkill,
    "network": network_cut,
}
