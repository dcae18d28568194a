"""The scenario suite (tests/scenarios/*.toml) through ``telehub rules test``'s runner, and the
runner's own failure modes: a missed expectation exits 1, a malformed file exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.alerting import scenarios

pytestmark = pytest.mark.integration

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


def test_there_are_at_least_30_scenarios() -> None:
    assert len(SCENARIOS) >= 30


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_scenario(path: Path, pg_admin_dsn: str) -> None:
    [outcome] = await scenarios.run([path], pg_admin_dsn)
    assert outcome.lines, "a scenario without expectations proves nothing"
    assert outcome.ok, "\n".join(line for ok, line in outcome.lines if not ok)


def test_a_miss_exits_1_and_is_reported(tmp_path: Path, pg_admin_dsn: str) -> None:
    wrong = tmp_path / "wrong.toml"
    text = (SCENARIOS[0].parent / "s1_boundary_87_is_red.toml").read_text()
    wrong.write_text(text.replace('level = "red"', 'level = "yellow"'))
    report = tmp_path / "r.json"
    rc = scenarios.main([str(wrong), "--json", str(report), "--database-url", pg_admin_dsn])
    assert rc == 1
    [entry] = json.loads(report.read_text())
    assert entry["ok"] is False
    assert "level='red' (expected 'yellow')" in entry["expectations"][0]["line"]


@pytest.mark.parametrize(
    "body",
    ['[patient]\nprogrammes = ["astrology"]\nprogrammes_from = 2026-01-01T00:00:00Z\n',
     '[patient]\nprogrammes = []\nprogrammes_from = 2026-01-01T00:00:00Z\n'
     '[[steps]]\nat = 2026-02-01T08:00:00Z\nreadings = [{metric = "mood", value = "1"}]\n',
     "not toml ["],
)  # fmt: skip
def test_malformed_scenario_exits_2(tmp_path: Path, pg_admin_dsn: str, body: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    assert scenarios.main([str(bad), "--database-url", pg_admin_dsn]) == 2
