"""A hub written only from docs/protocol.md (docs/examples/doc_hub.py: the standard library and
``mosquitto_pub``/``mosquitto_sub``) against the real ingester, broker and PostgreSQL."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from gateway.catalog import METRICS, codes_table
from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import HUB, running

DOC_HUB = Path(__file__).parents[2] / "docs" / "examples" / "doc_hub.py"


def test_the_doc_hub_uses_nothing_of_telehub() -> None:
    tree = ast.parse(DOC_HUB.read_text())
    imported = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported, "the parser found no imports at all"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


async def test_a_hub_written_from_the_doc_gets_the_documented_answers(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    parts = urlsplit(broker.url)
    async with running(fresh_db, broker.url) as h:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(DOC_HUB), parts.hostname or "127.0.0.1", str(parts.port),
            HUB, "oxi-1", "p1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        dl = h.query("SELECT reason FROM dead_letters ORDER BY id")
        assert proc.returncode == 0, (out.decode(), err.decode(), dl)
        receipts = [line for line in out.decode().splitlines() if line.startswith("{")]
        assert len(receipts) == 5, receipts
        rows = h.query(
            "SELECT value::text, time_source, source FROM readings WHERE device_id = 'oxi-1'"
        )
        assert rows == [("97", "hub", "nonin-df8")]
        reasons = h.query("SELECT reason FROM dead_letters ORDER BY id")
        assert len(reasons) == 3, reasons
        assert "412" in reasons[0][0]


def test_the_codes_table_in_the_doc_is_the_catalog() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert codes_table() in doc, "regenerate the table with: python -m gateway.catalog"
    assert (
        codes_table().count("\n")
        == len(METRICS) + sum(len(m.ranges) - 1 for m in METRICS.values()) + 2
    )


def test_the_required_column_is_the_schema() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    schema = json.loads((Path(__file__).parents[2] / "docs" / "wire-schema.json").read_text())
    required = set(schema["$defs"]["Reading"]["required"])
    section = doc.split("## Reading\n", 1)[1].split("\n### ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    seen: set[str] = set()
    for row in rows:
        cells = row.split(" | ")
        names = re.findall(r"`([a-z_]+)`", cells[0])
        seen.update(names)
        assert all((n in required) == (cells[1] == "yes") for n in names), row
    assert required <= seen
    assert seen == set(schema["$defs"]["Reading"]["properties"])
