"""Sampling profiles of the ingester processes with py-spy (optional: ``--profile DIR``).

py-spy is a development tool, not a dependency: ``.venv/bin/pip install py-spy``. It samples the
running ingester from outside (``--nonblocking``, 200 Hz, idle stacks excluded), writes a raw
collapsed-stack file and an SVG flame graph per process, and the summary added to the JSON says
where the ingester's CPU went: the share of samples whose innermost frame is in each module
(``by_module``) and the heaviest innermost functions (``top_functions``), plus the share of
samples inside a few functions of interest, innermost or not (``inclusive``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 200
#: function name -> label, for the inclusive shares
INCLUSIVE = {
    "_validate": "validate (decode + checks + bindings)",
    "check_reading": "check_reading",
    "write_batch": "database transaction (write_batch)",
    "_insert_readings": "COPY + INSERT ON CONFLICT",
    "raise_alerts": "rules and alerts",
    "_last_seen": "last_seen updates",
    "settle": "receipts (build)",
    "publish_nowait": "receipts (publish)",
    "loop_read": "MQTT read (paho)",
    "_on_message": "MQTT inbound callback",
    "ack": "PUBACK (paho)",
    "_drain": "batch drain",
}


def available() -> str | None:
    exe = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, directory: Path) -> None:
        exe = available()
        if exe is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.exe = exe
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._t0 = 0.0

    def start(self, pids: list[int], label: str) -> None:
        self._procs = []
        for pid in pids:
            raw = self.directory / f"{label}-{pid}.txt"
            p = subprocess.Popen(
                [
                    self.exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(RATE),
                    "--nonblocking",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._procs.append((p, raw))
        self._t0 = time.monotonic()
        time.sleep(0.3)  # let py-spy attach before the load starts

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self._t0
        for p, _ in self._procs:
            p.send_signal(signal.SIGINT)
        for p, _ in self._procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stacks: Counter[str] = Counter()
        files = []
        for _, raw in self._procs:
            if raw.exists():
                files.append(str(raw))
                for line in raw.read_text().splitlines():
                    stack, _, n = line.rpartition(" ")
                    if n.isdigit():
                        stacks[stack] += int(n)
        return summarize(stacks, seconds * RATE * max(len(self._procs), 1), files)


def _frame(f: str) -> tuple[str, str]:
    """``func (path/to/module.py:12)`` -> (func, module path)."""
    name, _, rest = f.partition(" (")
    path = rest.rsplit(":", 1)[0]
    return name.strip(), path


def summarize(stacks: Counter[str], possible: float, files: list[str]) -> dict[str, Any]:
    total = sum(stacks.values())
    if not total:
        return {"samples": 0, "files": files}
    by_module: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, n in stacks.items():
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        name, path = _frame(frames[-1])
        by_module[path] += n
        by_function[f"{name} ({path})"] += n
        seen = {_frame(f)[0] for f in frames}
        for fn, label in INCLUSIVE.items():
            if fn in seen:
                inclusive[label] += n

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    return {
        "samples": total,
        "busy_share": round(min(total / possible, 1.0), 3) if possible else None,
        "by_module": {k: pct(v) for k, v in by_module.most_common(12)},
        "top_functions": {k: pct(v) for k, v in by_function.most_common(15)},
        "inclusive": {k: pct(v) for k, v in inclusive.most_common()},
        "files": files,
    }
