"""``python -m bench`` (``make bench ARGS=...``): telehub's ingest benchmark, all figures, one run.

Sizes: full (default: 2,000 households, 300,000 readings), ``--quick`` (200 households, 60,000
readings, shorter windows, a 30 s disconnect instead of 5 min) and ``--tiny`` (a smoke run for CI,
under a minute). ``--json PATH`` writes the figures; ``--profile DIR`` adds py-spy profiles of the
ingester runs (needs py-spy). See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from bench import edge, env, report
from bench.ceiling import run_ceiling
from bench.generate import Household, Message, fleet_for, households, make_workload, messages
from bench.ingest import run_publishers_only, run_throughput
from bench.latency import run_latency
from bench.naive import run_naive
from bench.profile import Profiler
from gateway.alerting.templates import Programme
from gateway.fleet import Fleet

log = logging.getLogger("bench")


@dataclass(frozen=True, slots=True)
class Sizes:
    name: str
    households: int
    records: int  # per household, 3 readings each
    naive_readings: int
    latency_seconds: float
    edge_idle: float
    edge_stream: float
    edge_disconnect: float

    @property
    def readings(self) -> int:
        return self.households * self.records * 3


FULL = Sizes("full", 2000, 50, 30_000, 20.0, 60.0, 60.0, 300.0)
QUICK = Sizes("quick", 200, 100, 6_000, 5.0, 10.0, 10.0, 30.0)
TINY = Sizes("tiny", 20, 10, 300, 1.0, 2.0, 3.0, 3.0)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller, shorter run (~2 min)")
    size.add_argument("--tiny", action="store_true", help="smoke run for CI (< 1 min)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument(
        "--dsn",
        default=os.environ.get("TELEHUB_BENCH_DSN", env.DEFAULT_DSN),
        help="PostgreSQL allowed to CREATE DATABASE (default: %(default)s)",
    )
    p.add_argument("--households", type=int, help="override the size's households")
    p.add_argument("--records", type=int, help="override records per household (3 readings)")
    p.add_argument("--disconnect", type=float, help="edge disconnect in seconds (full: 300)")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--uvloop", action="store_true", help="run the ingesters on uvloop")
    p.add_argument("--profile", type=Path, help="py-spy profiles of the ingester runs here")
    p.add_argument("--workdir", type=Path, help="keep broker logs etc. here")
    p.add_argument(
        "--alerting-only",
        action="store_true",
        help="only the ingest runs without and with every patient on the COPD programme",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _machine(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}".encode()).fetchone()[0]  # type: ignore[index]
            for name in (
                "server_version",
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "wal_level",
                "max_wal_size",
            )
        }
    try:
        mosq = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        mosq = "unknown"
    return {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": settings,
        "mosquitto": mosq,
    }


def run_programme(
    args: argparse.Namespace,
    workdir: Path,
    plain_fleet: Fleet,
    homes: Sequence[Household],
    per_message: dict[int, list[Message]],
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    """Ingest with no programme (the legacy SpO2 rule only), then with every patient on the
    COPD programme's default rules (S1, S4, P, T1: thresholds, a delta with its window query, a
    non-latching rule), in one run, on two databases that differ only in the programme; and
    publish->alert latency with the programme."""
    out: dict[str, Any] = {"programme": Programme.COPD.value}
    latency_s = (TINY if args.tiny else QUICK if args.quick else FULL).latency_seconds
    programme_fleet = fleet_for([*homes, *edge.households()], [Programme.COPD])
    for name, fleet in (("no_programme", plain_fleet), ("copd", programme_fleet)):
        with env.database(args.dsn, fleet) as dsn:
            runs: dict[str, Any] = {}
            for n in (10, 1):
                label = f"alerting-{name}-{n}"
                log.info("phase: %s (load %.2f)", label, os.getloadavg()[0])
                res = run_throughput(
                    workdir, dsn, per_message[n], publishers=args.publishers, label=label,
                    profile=profiler,
                )  # fmt: skip
                runs[f"per_message_{n}"] = res.as_json()
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM clinical_alerts").fetchone()
                runs["clinical_alerts"] = row[0] if row else 0
            if name == "copd":
                runs["latency_1000"] = run_latency(
                    workdir, dsn, homes, rate=1000, seconds=latency_s, publishers=args.publishers
                )
            out[name] = runs
    for n in (10, 1):
        key = f"per_message_{n}"
        out[f"ratio_{n}"] = round(
            out["copd"][key]["readings_per_s"] / out["no_programme"][key]["readings_per_s"], 3
        )
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    if args.households or args.records:
        sizes = replace(
            sizes,
            households=args.households or sizes.households,
            records=args.records or sizes.records,
        )
    if args.disconnect is not None:
        sizes = replace(sizes, edge_disconnect=args.disconnect)
    profiler = Profiler(args.profile) if args.profile else None
    homes = households(sizes.households)
    t0 = time.monotonic()
    workload = make_workload(homes, sizes.records, seed=1)
    per_message = {n: messages(workload, n) for n in (1, 10)}
    naive_msgs = {n: messages(workload, n, limit=sizes.naive_readings) for n in (1, 10)}
    log.info("workload: %d readings in %.1f s", workload.total, time.monotonic() - t0)
    result: dict[str, Any] = {"sizes": dict(asdict(sizes), readings=workload.total)}
    fleet = fleet_for([*homes, *edge.households()])
    if args.alerting_only:
        result["programme"] = run_programme(args, workdir, fleet, homes, per_message, profiler)
        result["seconds"] = round(time.monotonic() - t0, 1)
        return result
    with env.database(args.dsn, fleet) as dsn:
        result["machine"] = _machine(dsn)
        result["machine"]["storage"] = env.storage_mode(dsn)
        pubs = args.publishers

        def phase(name: str) -> None:
            log.info("phase: %s (load %.2f)", name, os.getloadavg()[0])

        phase("ceiling")
        result["ceiling"] = run_ceiling(dsn, workload)
        phase("publishers alone")
        result["publishers_only"] = run_publishers_only(workdir, per_message[1], publishers=pubs)
        result["naive"] = {}
        for n in (1, 10):
            phase(f"naive {n}/msg")
            result["naive"][f"per_message_{n}"] = run_naive(
                workdir, dsn, naive_msgs[n], publishers=pubs, label=f"naive-{n}"
            )
        result["telehub"] = {"shared_2": {}}
        for ingesters, dest in ((1, result["telehub"]), (2, result["telehub"]["shared_2"])):
            for n in (10, 1):
                label = f"telehub-{ingesters}x-{n}"
                phase(label)
                res = run_throughput(
                    workdir,
                    dsn,
                    per_message[n],
                    publishers=pubs,
                    ingesters=ingesters,
                    uvloop=args.uvloop,
                    profile=profiler,
                    label=label,
                )
                dest[f"per_message_{n}"] = res.as_json()
        result["latency"] = {}
        for rate in (1000, 5000):
            phase(f"latency {rate}/s")
            result["latency"][f"rate_{rate}"] = run_latency(
                workdir, dsn, homes, rate=rate, seconds=sizes.latency_seconds, publishers=pubs
            )
        phase("edge")
        result["edge"] = edge.run_edge(
            workdir,
            dsn,
            idle=sizes.edge_idle,
            stream=sizes.edge_stream,
            disconnect=sizes.edge_disconnect,
        )
    result["programme"] = run_programme(args, workdir, fleet, homes, per_message)
    result["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    t = result["telehub"]
    result["ratios"] = {
        "telehub_10_to_ceiling": round(
            t["per_message_10"]["readings_per_s"] / result["ceiling"]["readings_per_s"], 3
        ),
        "telehub_10_to_naive": round(
            t["per_message_10"]["readings_per_s"]
            / result["naive"]["per_message_10"]["readings_per_s"],
            1,
        ),
        "telehub_1_to_naive": round(
            t["per_message_1"]["readings_per_s"]
            / result["naive"]["per_message_1"]["readings_per_s"],
            1,
        ),
    }
    result["targets"] = report.targets(result)
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("bench").setLevel(logging.INFO)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            result = run(args, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="telehub-bench-") as d:
                result = run(args, Path(d))
    except env.BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if not args.alerting_only:
        print(report.table(result))
    print(report.programme_table(result))
    if args.json:
        report.write_json(result, args.json)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
