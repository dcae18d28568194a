"""The clinician page's script, run by Node against a real server: live stream over fetch with the
bearer token, an alert raised afterwards appears, and its Acknowledge button acknowledges it."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from gateway.api import create_app
from tests.gateway.api_support import TOKENS, raise_alert, seed, serve

pytestmark = pytest.mark.integration

NODE = shutil.which("node")
HARNESS = Path(__file__).with_name("webpage_harness.js")


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's script")
async def test_page_streams_and_acknowledges(fresh_db: str) -> None:
    assert NODE is not None
    seed(fresh_db)
    page = resources.files("gateway.web").joinpath("index.html")
    async with serve(create_app(fresh_db)) as base:
        proc = await asyncio.create_subprocess_exec(
            NODE,
            str(HARNESS),
            str(page),
            base,
            TOKENS["rh"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            async with asyncio.timeout(20):
                line = (await proc.stdout.readline()).decode()
                assert line.startswith("LIVE "), line + (await proc.stderr.read()).decode()
                assert json.loads(line[5:]) == [["Anna A.", "p-001", "0", "—"]]

                alert_id = await raise_alert(
                    fresh_db, "p-001", value="86.5", reading_time=datetime(2025, 3, 1, tzinfo=UTC)
                )
                line = (await proc.stdout.readline()).decode()
                assert line.startswith("ALERT "), line
                assert json.loads(line[6:]) == [
                    "critical",
                    "p-001",
                    "SpO2 below 90 %",
                    "86.5 %",
                    "1",
                ]
                assert (await proc.stdout.readline()).decode() == "ACKED\n"
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "SELECT acknowledged_by, acknowledged_org FROM alerts WHERE alert_id = %s",
            (alert_id,),
        ).fetchone()
    assert row == ("Dr. Hansen", "rh")
