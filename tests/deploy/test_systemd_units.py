"""The shipped systemd units: exposure score and the options the sandbox depends on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
MAX_EXPOSURE = 2.5


def _options(unit: Path) -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            opts.setdefault(k.strip(), []).append(v.strip())
    return opts


@pytest.mark.parametrize("name", ["telehub-edge.service", "telehub-gateway.service"])
def test_exposure_score_is_at_most_2_5(name: str) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    out = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(UNITS / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert m is not None, out.stdout[-2000:] + out.stderr[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE, out.stdout


@pytest.mark.parametrize("name", ["telehub-edge.service", "telehub-gateway.service"])
def test_units_are_notify_with_a_watchdog_and_no_privileges(name: str) -> None:
    o = _options(UNITS / name)
    assert o["Type"] == ["notify"]
    assert int(o["WatchdogSec"][0]) > 0
    assert o["DynamicUser"] == ["yes"]
    assert o["CapabilityBoundingSet"] == [""]
    assert o["ProtectSystem"] == ["strict"]
    assert o["UMask"] == ["0077"]
    assert o["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in o["SystemCallFilter"]


def test_hub_unit_allows_only_serial_adapters_and_bluez() -> None:
    o = _options(UNITS / "telehub-edge.service")
    assert o["DevicePolicy"] == ["closed"]
    assert sorted(o["DeviceAllow"]) == ["char-ttyACM rw", "char-ttyUSB rw"]
    assert o["SupplementaryGroups"] == ["dialout bluetooth"]
    assert o["StateDirectoryMode"] == ["0700"]
