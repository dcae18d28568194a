"""The chaos matrix: readings flow from simulated hubs while faults are applied, then the database
is reconciled against the ground truth.

    python -m tests.chaos.matrix --readings N [--hubs H] [--duration S] [--faults a,b,...]

Prints one line per applied fault and, last, exactly
``chaos: sent=<n> stored=<n> lost=<n> duplicates=<n>``. Exit status 0 only if nothing was lost,
nothing doubled, no unexpected row was found and every fault really happened.

The faults (:mod:`tests.chaos.faults`), applied in this order and repeated over the generation
time: SIGKILL the ingester, SIGKILL Mosquitto (persistence on), restart PostgreSQL (crash stop),
cut PostgreSQL at the TCP proxy, SIGKILL a hub mid-batch, cut the hubs' network. See
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.cluster import Cluster, ClusterConfig
from tests.chaos.faults import FAULTS, FaultRecord, Timing
from tests.chaos.reconcile import Reconciliation, reconcile

log = logging.getLogger(__name__)

Report = Callable[[str], None]

#: ``--postgres shared``: the machine's server, found as tests/fixtures/fix_pg.py finds it
DEFAULT_ADMIN_DSN = os.environ.get("TELEHUB_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")

#: Hub counters worth printing: evidence that re-sends happened and were deduplicated.
HUB_COUNTERS = (
    "uplink.readings_sent",
    "uplink.stored",
    "uplink.duplicates",
    "uplink.requeued_on_connect",
    "uplink.receipt_timeouts",
    "mqtt.connected",
    "mqtt.connect_failed",
    "chaos.outbox_full",
)


@dataclass
class MatrixConfig:
    readings: int = 2000
    hubs: int = 4
    devices: int = 4  # per hub
    duration: float | None = None  # seconds of generation; default from the size
    faults: tuple[str, ...] = tuple(FAULTS)
    rounds: int | None = None  # applications of the whole fault list; default from the duration
    batch: int = 100
    window: int = 4
    receipt_timeout: float = 5.0
    drain_timeout: float | None = None
    postgres: str = "embedded"
    admin_dsn: str = DEFAULT_ADMIN_DSN
    workdir: Path | None = None
    keep: bool = False
    timing: Timing = field(default_factory=Timing)

    def generation_seconds(self) -> float:
        if self.duration is not None:
            return self.duration
        return max(40.0, self.readings / 800.0)

    def fault_rounds(self) -> int:
        if self.rounds is not None:
            return self.rounds
        # one round of every fault per ~3 minutes of generation, at least one
        return max(1, int(self.generation_seconds() // 180))


@dataclass
class MatrixResult:
    faults: list[FaultRecord]
    result: Reconciliation
    drained: bool
    outbox_left: int
    hub_dead_letters: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.result.clean
            and self.drained
            and self.outbox_left == 0
            and all(f.happened for f in self.faults)
        )


def run_matrix(cfg: MatrixConfig, report: Report) -> MatrixResult:
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="telehub-chaos-"))
    duration = cfg.generation_seconds()
    rate = cfg.readings / duration
    cluster = Cluster(
        ClusterConfig(
            workdir=workdir,
            readings=cfg.readings,
            hubs=cfg.hubs,
            devices=cfg.devices,
            rate=rate,
            batch=cfg.batch,
            window=cfg.window,
            receipt_timeout=cfg.receipt_timeout,
            postgres=cfg.postgres,
            admin_dsn=cfg.admin_dsn,
        )
    )
    plan = [name for _ in range(cfg.fault_rounds()) for name in cfg.faults]
    report(
        f"setup: {cfg.readings} readings from {cfg.hubs} hubs x {cfg.devices} devices at "
        f"{rate:.0f}/s for ~{duration:.0f}s; postgres={cfg.postgres}; faults={len(plan)}; "
        f"workdir={workdir}"
    )
    ok = False
    try:
        cluster.start()
        cluster.started = time.monotonic()
        records: list[FaultRecord] = []
        for i, name in enumerate(plan):
            due = duration * (i + 1) / (len(plan) + 1)
            wait = due - cluster.elapsed()
            if wait > 0:
                time.sleep(wait)
            rec = FAULTS[name](cluster, cfg.timing, i)
            records.append(rec)
            report(rec.line(i + 1, len(plan)))
        drained, left = _drain(cluster, cfg, duration)
        committed, _, _ = cluster.outbox_totals()
        report(
            f"drain: t={cluster.elapsed():.1f}s drained={drained} committed={committed} "
            f"left_in_outboxes={left} stored={cluster.stored()}"
        )
        cluster.stop_hubs()
        hub_dead = sum(h.local_dead_letters() for h in cluster.hubs)
        counters = cluster.hub_counters()
        report(
            "hubs: "
            + " ".join(f"{k}={counters.get(k, 0)}" for k in HUB_COUNTERS)
            + " (counted by each hub process since its last start)"
        )
        assert cluster.ingester is not None
        cluster.ingester.stop()
        result = reconcile(cluster)
        report(
            f"reconcile: key_unstable={result.key_unstable} unexpected={result.unexpected} "
            f"dead_letters={result.dead_letters} hub_dead_letters={hub_dead} "
            f"ingester_starts={cluster.ingester.starts} "
            f"hub_starts={sum(h.proc.starts for h in cluster.hubs)}"
            + (f" missing(first)={list(result.missing_sample)}" if result.missing_sample else "")
        )
        out = MatrixResult(records, result, drained, left, hub_dead, cluster.elapsed())
        ok = out.ok
        report(result.last_line())
        return out
    finally:
        if not ok:
            for p in [cluster.ingester, *(h.proc for h in cluster.hubs)]:
                if p is not None:
                    log.warning("--- %s (last lines) ---\n%s", p.name, p.log_tail(15))
        cluster.close()
        if cfg.workdir is None and not cfg.keep and ok:
            shutil.rmtree(workdir, ignore_errors=True)


def _drain(cluster: Cluster, cfg: MatrixConfig, duration: float) -> tuple[bool, int]:
    """Wait until every hub has generated its quota and its outbox is empty."""
    total = sum(h.quota for h in cluster.hubs)
    timeout = cfg.drain_timeout or max(120.0, duration)
    deadline = time.monotonic() + duration * 0.5 + timeout
    left = -1
    while time.monotonic() < deadline:
        committed, left, _ = cluster.outbox_totals()
        if committed >= total and left == 0:
            return True, 0
        time.sleep(0.5)
    return False, left


def parse_args(argv: list[str] | None = None) -> MatrixConfig:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.matrix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--readings", type=int, default=2000)
    p.add_argument("--hubs", type=int, default=4)
    p.add_argument("--devices", type=int, default=4, help="devices per hub")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of generation (default: max(40, readings/800))",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="times the fault list is applied (default: one per 3 min, at least 1)",
    )
    p.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}"
    )
    p.add_argument("--batch", type=int, default=100, help="readings per hub message")
    p.add_argument("--window", type=int, default=4, help="hub messages in flight")
    p.add_argument("--receipt-timeout", type=float, default=5.0)
    p.add_argument("--drain-timeout", type=float, default=None)
    p.add_argument(
        "--postgres",
        choices=["embedded", "shared"],
        default="embedded",
        help="embedded: a server of its own that the restart fault stops and starts; "
        "shared: a fresh database on --admin-dsn (restart = terminate backends)",
    )
    p.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--log-level", default="WARNING")
    a = p.parse_args(argv)
    logging.basicConfig(
        level=a.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    faults = tuple(f for f in a.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {unknown}; choose from {list(FAULTS)}")
    return MatrixConfig(
        readings=a.readings,
        hubs=a.hubs,
        devices=a.devices,
        duration=a.duration,
        rounds=a.rounds,
        faults=faults,
        batch=a.batch,
        window=a.window,
        receipt_timeout=a.receipt_timeout,
        drain_timeout=a.drain_timeout,
        postgres=a.postgres,
        admin_dsn=a.admin_dsn,
        workdir=a.workdir,
        keep=a.keep,
    )


def _print(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return 0 if run_matrix(cfg, _print).ok else 1
    return 130


if __name__ == "__main__":
    sys.exit(main())
