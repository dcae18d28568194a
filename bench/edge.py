"""The edge agent: memory and CPU idle and at ~10 readings/s, and the replay after a disconnect.

The agent runs in a fresh interpreter (:mod:`bench.edge_agent`, so its memory is its own) against
a private broker, with telehub's ingester behind it (receipts are what empty the outbox). Memory is
the resident set (``VmRSS``, highest sample, and the kernel's high-water mark ``VmHWM``); CPU is
``utime + stime`` from ``/proc/<pid>/stat`` over the window, as a share of one core. The simulated
devices live in the agent's process, so the streaming figures include the simulator's own work
(generating physiology, GATT notifications): they are an upper bound for the agent.

Replay: while streaming, the hub's link is cut for ``disconnect`` seconds (:mod:`bench.proxy`;
the broker and the ingester stay up, the outbox fills at the live rate), then restored; from the
agent's reconnect until the outbox is back to its live level, ``replay rate = readings receipted
/ seconds``. Compared with the live rate it says how fast a hub catches up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import env
from bench.edge_agent import DEVICES, HUB, PATIENT
from bench.generate import Household
from bench.ingest import Ingesters
from bench.proxy import LinkProxy

_TICK = os.sysconf("SC_CLK_TCK")


def households() -> list[Household]:
    """The edge hub's devices, for the fleet (they must be bound for readings to be stored)."""
    return [Household(PATIENT, HUB, address) for address, _ in DEVICES]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def memory_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class Agent:
    def __init__(self, mqtt_url: str, data_dir: Path, mode: str) -> None:
        self.opts = {"mqtt_url": mqtt_url, "data_dir": str(data_dir), "mode": mode}
        self.outbox = data_dir / "outbox.sqlite3"
        self.events: list[tuple[str, float]] = []
        self.changed = threading.Condition()
        self.popen: subprocess.Popen[str] | None = None

    def __enter__(self) -> Agent:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.edge_agent", json.dumps(self.opts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_event("connected", 0, 60)
        return self

    def _read(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            ev = json.loads(line)
            with self.changed:
                self.events.append((ev["event"], ev["t"]))
                self.changed.notify_all()

    def wait_event(self, name: str, after: int, timeout: float) -> float:
        """Monotonic time of the first ``name`` event with index >= ``after``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for ev, t in self.events[after:]:
                    if ev == name:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise env.BenchError(f"edge agent: no {name!r} within {timeout:.0f} s")
                self.changed.wait(left)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def outbox_counts(self) -> tuple[int, int]:
        """(rows pending, readings ever added) read from the agent's SQLite outbox."""
        with sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=5) as db:
            pending = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(pending), int(row[0]) if row else 0

    def measure(self, seconds: float) -> dict[str, Any]:
        """CPU share and memory over ``seconds``; readings added to the outbox meanwhile."""
        _, added0 = self.outbox_counts()
        c0, t0 = cpu_seconds(self.pid), time.monotonic()
        rss = 0
        while time.monotonic() - t0 < seconds:
            time.sleep(min(1.0, seconds / 5))
            rss = max(rss, memory_kib(self.pid)["VmRSS"])
        c1, t1 = cpu_seconds(self.pid), time.monotonic()
        _, added1 = self.outbox_counts()
        mem = memory_kib(self.pid)
        return {
            "seconds": round(t1 - t0, 1),
            "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 2),
            "rss_mib": round(max(rss, mem["VmRSS"]) / 1024, 1),
            "peak_rss_mib": round(mem["VmHWM"] / 1024, 1),
            "readings_per_s": round((added1 - added0) / (t1 - t0), 2),
        }

    def __exit__(self, *exc: object) -> None:
        if self.popen is not None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _replay(link: LinkProxy, agent: Agent, disconnect: float, live_rate: float) -> dict[str, Any]:
    before = len(agent.events)
    link.down()
    agent.wait_event("disconnected", before, 30)
    time.sleep(disconnect)
    link.up()
    pending0, added0 = agent.outbox_counts()
    t0 = agent.wait_event("connected", before, 60)
    level = max(20, int(2 * live_rate))  # the live level: about two seconds of readings
    deadline = time.monotonic() + 600
    while True:
        pending, added = agent.outbox_counts()
        t1 = time.monotonic()
        if pending <= level or t1 > deadline:
            break
        time.sleep(0.02)
    receipted = pending0 + (added - added0) - pending
    seconds = t1 - t0
    rate = receipted / seconds if seconds > 0 else 0.0
    return {
        "disconnect_s": disconnect,
        "backlog": pending0,
        "seconds": round(seconds, 3),
        "readings_per_s": round(rate, 1),
        "x_live_rate": round(rate / live_rate, 1) if live_rate else None,
        "drained": pending <= level,
    }


def run_edge(
    workdir: Path, dsn: str, *, idle: float, stream: float, disconnect: float
) -> dict[str, Any]:
    env.reset(dsn)
    out: dict[str, Any] = {}
    with env.broker(workdir / "broker-edge") as b, Ingesters(dsn, b.url):
        link = LinkProxy(b.port)
        try:
            with Agent(link.url, workdir / "edge-idle", "idle") as agent:
                time.sleep(min(3.0, idle))  # settle after start-up
                out["idle"] = agent.measure(idle)
            with Agent(link.url, workdir / "edge-stream", "stream") as agent:
                time.sleep(min(5.0, stream))  # devices connect and start streaming
                out["streaming"] = agent.measure(stream)
                live = float(out["streaming"]["readings_per_s"])
                out["replay"] = _replay(link, agent, disconnect, live)
        finally:
            link.close()
    return out
