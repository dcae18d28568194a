"""Where the machine's CPU went during a run: per component, in cores (CPU seconds / wall seconds).

Components: the ingester process(es), the broker, PostgreSQL (every ``postgres`` process: the
ingester's backends, the WAL writer, the checkpointer...), and ``other`` (the whole machine's busy
time from ``/proc/stat`` minus the above: the publishers, the benchmark itself, other users of
the machine). On a 2-core machine, ``total`` near 2.0 means the run was CPU-bound.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_busy() -> float:
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / _TICK


def postgres_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    out.append(int(d.name))
            except OSError:
                continue
    return out


class CpuMeter:
    def __init__(self, ingesters: list[int], broker: int | None) -> None:
        self.groups: dict[str, list[int]] = {
            "ingester": ingesters,
            "broker": [broker] if broker else [],
            "postgres": postgres_pids(),
        }
        self._t0 = time.monotonic()
        self._busy0 = _machine_busy()
        self._cpu0 = {g: {p: _proc_cpu(p) for p in pids} for g, pids in self.groups.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        total = _machine_busy() - self._busy0
        out: dict[str, float] = {}
        known = 0.0
        for g, pids in self.groups.items():
            used = sum(max(0.0, _proc_cpu(p) - self._cpu0[g][p]) for p in pids)
            known += used
            out[g] = round(used / wall, 2) if wall > 0 else 0.0
        out["other"] = round(max(0.0, total - known) / wall, 2) if wall > 0 else 0.0
        out["total"] = round(total / wall, 2) if wall > 0 else 0.0
        return out
