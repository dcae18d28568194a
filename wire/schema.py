"""JSON Schema (2020-12) of the wire messages, generated from :mod:`wire.contract`.

The checked-in copy is ``docs/wire-schema.json``; regenerate it with ``python -m wire.schema``
(a test fails when it is out of date).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from wire import contract

#: The messages on the wire, by the topic leaf they travel on.
MESSAGES: tuple[type[msgspec.Struct], ...] = (
    contract.ReadingsMessage,
    contract.Reading,
    contract.HeldRecord,
    contract.Receipt,
    contract.HubStatus,
)


def ref_template(name: str) -> str:
    return f"#/$defs/{name}"


def wire_schema() -> dict[str, Any]:
    """One document: ``$defs`` of every message; ``readings[]`` items are Readings (the gateway
    decodes them one by one, so the contract types them as raw JSON)."""
    (_, components) = msgspec.json.schema_components(MESSAGES, ref_template="#/$defs/{name}")
    components["ReadingsMessage"]["properties"]["readings"]["items"] = {
        "$ref": ref_template("Reading")
    }
    components["ReadingsMessage"]["properties"]["held"]["items"] = {
        "$ref": ref_template("HeldRecord")
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"telehub wire contract v{contract.SCHEMA_VERSION}",
        "description": "Messages on telehub/v1/hubs/<hub>/readings (ReadingsMessage, whose "
        "readings[] are Reading), .../receipts (Receipt) and .../status (HubStatus, retained). "
        "See docs/protocol.md.",
        "$defs": components,
    }


def render() -> str:
    return json.dumps(wire_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("docs/wire-schema.json")
    out.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
