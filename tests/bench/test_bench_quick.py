"""`make bench` at its smallest size (``--tiny``) runs end to end on this machine's PostgreSQL and
Mosquitto and writes every figure: a check that the benchmark works, not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import FIGURES, get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_bench_writes_every_figure(tmp_path: Path, pg_admin_dsn: str) -> None:
    out = tmp_path / "out.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tiny",
            "--json",
            str(out),
            "--dsn",
            pg_admin_dsn,
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    missing = [f for f in FIGURES if _missing(figures, f)]
    assert missing == []
    readings = figures["sizes"]["readings"]
    rates = {f: get(figures, f) for f in FIGURES if f.endswith("readings_per_s")}
    assert all(isinstance(v, float | int) and v > 0 for v in rates.values()), rates
    # every run stored exactly what was published (the benchmark checks and fails otherwise)
    for path in (
        "telehub.per_message_1",
        "telehub.per_message_10",
        "telehub.shared_2.per_message_1",
        "telehub.shared_2.per_message_10",
    ):
        assert (get(figures, f"{path}.stored"), get(figures, f"{path}.readings")) == (
            readings,
            readings,
        )
    lat = figures["latency"]["rate_1000"]
    assert lat["receipts_seen"] == lat["messages"] and lat["alerts_seen"] == lat["probes"] > 0
    assert set(figures["targets"]) == {
        "ceiling_share_10",
        "readings_per_s_1",
        "alert_p99_1000",
        "edge_idle_rss",
        "edge_idle_cpu",
        "replay_x_live",
        "programme_ratio_10",
        "programme_ratio_1",
    }
    assert "database ceiling" in run.stdout and "targets" in run.stdout
    assert "programme copd" in run.stdout
    for path in ("programme.no_programme", "programme.copd"):
        for n in (1, 10):
            got = (get(figures, f"{path}.per_message_{n}.stored"), readings)
            assert got == (readings, readings), path


def _missing(figures: dict[str, object], path: str) -> bool:
    try:
        return get(figures, path) is None
    except KeyError:
        return True
