"""docs/protocol.md's idempotency-key vectors: recomputed from the text alone and by the code."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path

from drivers.observation import DeviceTime, Quantity, Special
from edge.readings import device_time_text, value_token
from wire.contract import idempotency_key

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
VECTORS = re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{32})` \|$", DOC, flags=re.M)
TEXT = re.compile(r"^(.+?)-(P\d+)-(\d+)-(.+)-([a-z0-9-]+:[^-]+)$")


def test_vectors_are_there() -> None:
    assert len(VECTORS) == 5


def test_vectors_by_the_doc_recipe_and_by_the_code() -> None:
    for text, key in VECTORS:
        assert hashlib.blake2b(text.encode(), digest_size=16).hexdigest() == key, text
        m = TEXT.match(text)
        assert m is not None, text
        device, patient, mdc, token, supplemental = m.groups()
        got = idempotency_key(
            device=device,
            patient=patient,
            mdc=int(mdc),
            time_token=token,
            supplemental=supplemental,
        )
        assert got == key, text


def test_time_and_value_tokens_as_documented() -> None:
    assert device_time_text(DeviceTime(0, 0, 0, 7, 5, 9)) == "0000-00-00T07:05:09"
    assert device_time_text(DeviceTime(2026, 11, 26, 7, 30, 0, 60)) == "2026-11-26T07:30:00+60m"
    assert value_token(Quantity(Decimal(12).scaleb(1), "mm[Hg]", 3872)) == "1.2E+2mm[Hg]"
    assert value_token(Quantity(Decimal(366).scaleb(-1), "Cel", 6048)) == "36.6Cel"
    assert value_token(Quantity(None, "%", 544, Special.NAN)) == "nan%"
