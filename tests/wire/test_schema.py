"""docs/wire-schema.json is generated from wire/contract.py and kept up to date."""

from __future__ import annotations

import json
from pathlib import Path

from wire import schema

CHECKED_IN = Path(__file__).parents[2] / "docs" / "wire-schema.json"


def test_checked_in_schema_is_up_to_date() -> None:
    assert CHECKED_IN.read_text() == schema.render(), "run: python -m wire.schema"


def test_schema_names_required_fields_and_types_readings() -> None:
    defs = json.loads(CHECKED_IN.read_text())["$defs"]
    assert set(defs["ReadingsMessage"]["required"]) == {"v", "hub", "msg_id", "sent_at", "readings"}
    assert defs["ReadingsMessage"]["properties"]["readings"]["items"] == {"$ref": "#/$defs/Reading"}
    assert defs["Receipt"]["required"] == ["msg_id"]
    key = defs["Rejection"]["properties"]["key"]
    assert {"type": "null"} in key["anyOf"]  # rejected[].key may be null (a whole-message reject)


def test_main_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert schema.main([str(out)]) == 0
    assert out.read_text() == CHECKED_IN.read_text()
