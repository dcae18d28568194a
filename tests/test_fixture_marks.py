"""The fixture plugins mark their users ``integration`` (no hand-written mark needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _collected(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        check=False,  # exit code 5 when everything is deselected
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [ln for ln in out.splitlines() if "::" in ln]


def test_server_fixture_users_are_deselected_by_not_integration() -> None:
    # test_smoke_fixtures.py carries no mark: one test uses fresh_db, the other mosquitto
    path = "tests/test_smoke_fixtures.py"
    everything = _collected(path)
    assert len(everything) == 2
    assert _collected(path, "-m", "not integration") == []
    assert _collected(path, "-m", "integration") == everything


def test_unit_tests_stay_selected() -> None:
    path = "tests/gateway/test_ingest_settings.py"
    assert len(_collected(path, "-m", "not integration")) == len(_collected(path)) > 0
