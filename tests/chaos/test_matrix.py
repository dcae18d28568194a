"""The chaos matrix at a small size (``make chaos N=...`` runs it at any size): every fault really
happens while readings flow, and the database then holds every committed reading exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import FAULTS
from tests.chaos.matrix import MatrixConfig, run_matrix
from tests.chaos.reconcile import Reconciliation

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

N = 2000
HUBS = 4


def test_chaos_matrix_small(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = MatrixConfig(readings=N, hubs=HUBS, duration=40.0, rounds=1, workdir=tmp_path / "chaos")
    out = run_matrix(cfg, lines.append)
    report = "\n".join(lines)

    assert [f.name for f in out.faults] == [
        "ingester-sigkill",
        "broker-sigkill",
        "postgres-restart",
        "postgres-cut",
        "hub-sigkill",
        "network-cut",
    ], report
    assert len(out.faults) == len(FAULTS)
    by_name = {f.name: f for f in out.faults}
    for name in ("ingester-sigkill", "broker-sigkill", "postgres-restart", "hub-sigkill"):
        ev = by_name[name].extra
        assert ev["pid_before"] != ev["pid_after"], (name, report)
    assert by_name["postgres-cut"].extra["cut"] >= 1, report
    assert by_name["hub-sigkill"].extra["in_flight"] >= 1, report  # killed mid-batch
    assert by_name["network-cut"].extra["cut"] >= HUBS, report
    assert by_name["network-cut"].extra["offline"] == HUBS, report  # last wills recorded
    assert all(f.happened for f in out.faults), report

    assert out.result == Reconciliation(
        sent=N,
        stored=N,
        duplicates=0,
        key_unstable=0,
        unexpected=0,
        dead_letters=0,
        missing_sample=(),
    ), report
    assert (out.drained, out.outbox_left, out.hub_dead_letters) == (True, 0, 0), report
    assert sum(line.startswith("fault ") for line in lines) == len(FAULTS)
    assert lines[-1] == f"chaos: sent={N} stored={N} lost=0 duplicates=0"
    assert out.ok
