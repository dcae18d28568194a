"""The edge runs on a small hub: it must not pull in the gateway's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_edge_imports_without_gateway_dependencies() -> None:
    code = (
        "import sys\n"
        "import edge.agent, edge.main, edge.ble.bleak_transport, edge.sessions.serial\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'fastapi', 'psycopg', 'psycopg_pool', 'pydantic', 'uvicorn', 'httpx', 'gateway'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == ""
