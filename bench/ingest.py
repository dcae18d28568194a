"""telehub's ingester, end to end: publishers → Mosquitto → ingester process(es) → PostgreSQL.

Each run starts a fresh broker and empties the phase tables, starts the ingester(s) in their own
processes (:mod:`bench.ingester_proc`), waits until they are subscribed, then releases the
publisher processes (:mod:`bench.publisher`). The figure is::

    readings/s = readings / (commit of the last batch - release of the publishers)

which includes everything on the path: broker routing, validation, device bindings, COPY +
INSERT ON CONFLICT, rule evaluation, dead letters/last-seen updates, COMMIT, receipts published
(and PUBACKed by the broker) and the PUBACKs of the inbound messages. The run checks afterwards
that every reading is in ``readings`` exactly once.

:class:`Ingesters` is also used by the latency and edge phases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import env
from bench.cpu import CpuMeter
from bench.generate import Message
from bench.profile import Profiler
from bench.publisher import PublisherResult, publish


@dataclass
class _Proc:
    popen: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    readings: int = 0
    t_last: float = 0.0
    batches: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)


class Ingesters:
    """``n`` ingester processes (a shared subscription group when n > 1); ``module`` is the
    child's module (:mod:`bench.ingester_proc`, or :mod:`bench.naive` for the baseline)."""

    def __init__(
        self,
        dsn: str,
        mqtt_url: str,
        *,
        n: int = 1,
        uvloop: bool = False,
        receive_maximum: int = 1000,
        batch_max_readings: int = 5000,
        module: str = "bench.ingester_proc",
    ) -> None:
        self.module = module
        self.opts: dict[str, Any] = {
            "database_url": dsn,
            "mqtt_url": mqtt_url,
            "group": "bench" if n > 1 else None,
            "uvloop": uvloop,
            "receive_maximum": receive_maximum,
            "batch_max_readings": batch_max_readings,
        }
        self.n = n
        self.procs: list[_Proc] = []
        self.changed = threading.Condition()

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs]

    def __enter__(self) -> Ingesters:
        tag = uuid.uuid4().hex[:6]
        for i in range(self.n):
            opts = dict(self.opts, client_id=f"bench-ingester-{tag}-{i}")
            popen = subprocess.Popen(
                [sys.executable, "-m", self.module, json.dumps(opts)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            proc = _Proc(popen)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()
            self.procs.append(proc)
        for p in self.procs:
            if not p.ready.wait(60):
                self.__exit__()
                raise env.BenchError("the ingester did not connect within 60 s")
        return self

    def _read(self, p: _Proc) -> None:
        assert p.popen.stdout is not None
        for line in p.popen.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.changed:
                if ev["event"] == "ready":
                    p.ready.set()
                elif ev["event"] == "progress":
                    p.readings, p.batches, p.t_last = ev["readings"], ev["batches"], ev["t"]
                elif ev["event"] == "stopped":
                    p.counters = ev["counters"]
                    p.stopped.set()
                self.changed.notify_all()
        p.stopped.set()

    def total(self) -> int:
        return sum(p.readings for p in self.procs)

    def wait_for(self, readings: int, timeout: float) -> float:
        """Block until the ingesters have settled ``readings`` readings; the monotonic time of
        the batch that completed them."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.total() < readings:
                left = deadline - time.monotonic()
                if left <= 0 or any(p.popen.poll() is not None for p in self.procs):
                    raise env.BenchError(
                        f"ingesters settled {self.total()} of {readings} readings in time"
                    )
                self.changed.wait(min(left, 0.5))
            return max(p.t_last for p in self.procs)

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.popen.stdin is not None:
                p.popen.stdin.close()
        for p in self.procs:
            try:
                p.popen.wait(30)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.procs:
            for k, v in p.counters.items():
                out[k] = out.get(k, 0) + v
        return out


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    readings: int
    messages: int
    seconds: float
    readings_per_s: float
    messages_per_s: float
    publishers_done_s: float  # when the last publisher had all its PUBACKs (since the release)
    stored: int
    batches: int
    counters: dict[str, int]
    cpu_cores: dict[str, float]
    profile: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings, "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "readings_per_s": round(self.readings_per_s, 1),
            "messages_per_s": round(self.messages_per_s, 1),
            "publishers_done_s": round(self.publishers_done_s, 3),
            "stored": self.stored, "batches": self.batches,
            "mean_batch_readings": round(self.readings / max(self.batches, 1), 1),
            "cpu_cores": self.cpu_cores,
            "profile": self.profile,
        }  # fmt: skip


def run_throughput(
    workdir: Path,
    dsn: str,
    msgs: Sequence[Message],
    *,
    publishers: int = 2,
    ingesters: int = 1,
    uvloop: bool = False,
    profile: Profiler | None = None,
    label: str = "ingest",
    module: str = "bench.ingester_proc",
) -> ThroughputResult:
    readings = sum(m.readings for m in msgs)
    env.reset(dsn)
    with (
        env.broker(workdir / f"broker-{label}") as b,
        Ingesters(dsn, b.url, n=ingesters, uvloop=uvloop, module=module) as ing,
    ):
        t_go = [0.0]
        if profile is not None:
            profile.start(ing.pids, label)
        meter = CpuMeter(ing.pids, b.pid)
        results: list[PublisherResult] = publish(
            b.port,
            msgs,
            processes=publishers,
            on_go=lambda: t_go.__setitem__(0, time.monotonic()),
        )
        t_end = ing.wait_for(readings, timeout=max(120.0, readings / 500))
        cpu = meter.stop()
        prof = profile.stop() if profile is not None else None
        batches = sum(p.batches for p in ing.procs)
    stored = env.count_readings(dsn)
    if stored != readings:
        raise env.BenchError(f"{label}: {stored} readings stored, {readings} sent")
    seconds = t_end - t_go[0]
    return ThroughputResult(
        readings=readings,
        messages=len(msgs),
        seconds=seconds,
        readings_per_s=readings / seconds,
        messages_per_s=len(msgs) / seconds,
        publishers_done_s=max(r.t_acked for r in results) - t_go[0],
        stored=stored,
        batches=batches,
        counters=ing.counters(),
        cpu_cores=cpu,
        profile=prof,
    )


def run_publishers_only(
    workdir: Path, msgs: Sequence[Message], *, publishers: int = 2
) -> dict[str, float]:
    """The publishers against the broker alone (no subscriber): their own ceiling."""
    readings = sum(m.readings for m in msgs)
    with env.broker(workdir / "broker-publishers") as b:
        t_go = [0.0]
        results = publish(
            b.port, msgs, processes=publishers, on_go=lambda: t_go.__setitem__(0, time.monotonic())
        )
    seconds = max(r.t_acked for r in results) - t_go[0]
    return {
        "readings": readings,
        "messages": len(msgs),
        "seconds": round(seconds, 3),
        "readings_per_s": round(readings / seconds, 1),
        "messages_per_s": round(len(msgs) / seconds, 1),
    }
