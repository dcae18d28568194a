"""`make demo` on embedded defaults: embedded PostgreSQL, in-process broker, no configuration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_on_embedded_defaults_stores_readings_and_raises_alerts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "telehub.cli",
            "demo",
            "--duration",
            "15",
            "--api-port",
            "0",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    last = re.fullmatch(r"demo: (\d+) readings stored, (\d+) alerts raised", lines[-1])
    assert last is not None, lines[-5:]
    readings, alerts = int(last[1]), int(last[2])
    assert readings > 20 and alerts >= 1
    # The clinician's webhook printed the alerts, and the console printed stored readings.
    assert any(line.startswith("ALERT → clinician webhook: patient P001") for line in lines)
    assert any(line.startswith("stored  P003  SpO2") for line in lines)
