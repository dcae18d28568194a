"""Contec CMS50D-BT (BLE 0xFF02) frames.

Vectors are built by hand from the field table in the reference (§6.3: ``EB 01 …`` 8-octet frames,
PR = octet 3, SpO2 = octet 4; start command ``9B 01 1C``) and the EMAY SleepO2 / Contec BLE
clients' frame rule (``EB 01 05 PR SpO2 7F 00 CK``, CK = sum of octets 0-6 & 0x7F), not by our
encoder: each checksum below is worked out in the comment next to it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.contec_bt import (
    CONTEC_BT_KEY,
    CONTEC_BT_NOTIFY,
    CONTEC_BT_WRITE,
    DRIVERS,
    START_COMMAND,
    ContecBtFrame,
    ContecBtFramer,
    checksum,
    decode_contec_bt,
)
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement, Special
from drivers.registry import REGISTRY
from tests.drivers.test_contec import pr, spo2

# PR 72, SpO2 98: 0xEB+0x01+0x05+0x48+0x62+0x7F+0x00 = 538 = 0x21A -> & 0x7F = 0x1A
PARAMS_72_98 = bytes.fromhex("eb010548627f001a")
# PR 255, SpO2 127 (no finger): 235+1+5+255+127+127+0 = 750 = 0x2EE -> 0x6E
PARAMS_MISSING = bytes.fromhex("eb0105ff7f7f006e")
# PR 0, SpO2 0 (the clients' other "no reading"): 235+1+5+0+0+127 = 368 = 0x170 -> 0x70
PARAMS_ZERO = bytes.fromhex("eb010500007f0070")
# Waveform, pleth 0x40: 235+0+2+64 = 301 = 0x12D -> 0x2D
WAVE_40 = bytes.fromhex("eb0002402d")


def test_start_command_carries_the_same_checksum_rule() -> None:
    # Reference §6.3: write 9B 01 1C to 0xFF01; 0x9B + 0x01 = 0x9C -> & 0x7F = 0x1C.
    assert bytes.fromhex("9b011c") == START_COMMAND
    assert checksum(START_COMMAND[:2]) == START_COMMAND[2]


def test_parameters_frame() -> None:
    m = decode_contec_bt(PARAMS_72_98)
    assert m.source == CONTEC_BT_KEY
    assert m.kind is Kind.CONTINUOUS
    assert m.raw == PARAMS_72_98
    assert m.observations == (spo2(98), pr(72))
    f = ContecBtFrame.parse(PARAMS_72_98)
    assert (f.type, f.pulse_rate, f.spo2, f.reserved, f.pleth) == (1, 72, 98, b"\x7f\x00", None)
    assert f.encode() == PARAMS_72_98


@pytest.mark.parametrize("raw", [PARAMS_MISSING, PARAMS_ZERO])
def test_missing_markers(raw: bytes) -> None:
    assert decode_contec_bt(raw).observations == (spo2(Special.MISSING), pr(Special.MISSING))


def test_waveform_frame_has_pleth_and_no_reading() -> None:
    f = ContecBtFrame.parse(WAVE_40)
    assert (f.type, f.pleth, f.pulse_rate, f.spo2, f.reserved) == (0, 0x40, None, None, None)
    assert f.measurement(CONTEC_BT_KEY, WAVE_40) is None
    with pytest.raises(DecodeError) as ei:
        decode_contec_bt(WAVE_40)
    assert (ei.value.field, ei.value.offset) == ("type", 1)


def test_empty_waveform_payload_has_no_pleth() -> None:
    # EB 00 01 CK: 235+0+1 = 236 = 0xEC -> 0x6C
    assert ContecBtFrame.parse(bytes.fromhex("eb00016c")).pleth is None


@pytest.mark.parametrize(
    ("raw", "field", "offset"),
    [
        (b"\xeb\x01\x05", "frame", 0),
        (bytes.fromhex("ea010548627f001a"), "sync", 0),
        (bytes.fromhex("eb010648627f001a"), "length", 2),
        (bytes.fromhex("eb010548627f001b"), "checksum", 7),
        # parameters frame of length 3: 235+1+3+72+98 = 409 = 0x199 -> 0x19
        (bytes.fromhex("eb01034862" + "19"), "length", 2),
        # SpO2 101: 235+1+5+72+101+127 = 541 = 0x21D -> 0x1D
        (bytes.fromhex("eb010548657f001d"), "spo2", 4),
    ],
)
def test_bad_frames(raw: bytes, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as ei:
        ContecBtFrame.parse(raw)
    assert (ei.value.field, ei.value.offset) == (field, offset)


def test_build_computes_the_checksum() -> None:
    assert ContecBtFrame.build(1, bytes.fromhex("48627f00")).encode() == PARAMS_72_98
    assert ContecBtFrame.build(0, b"\x40").encode() == WAVE_40


def test_framer_stream_with_garbage_waveform_and_bad_frames() -> None:
    bad_ck = bytes.fromhex("eb010548627f0000")
    stream = b"\x00\x11" + PARAMS_72_98 + WAVE_40 + b"\xeb\x00\x00" + bad_ck + PARAMS_MISSING
    out = ContecBtFramer().feed(stream)
    kinds = [(type(r).__name__, getattr(r, "field", None), getattr(r, "offset", None)) for r in out]
    assert kinds == [
        ("DecodeError", "sync", 0),  # the two leading octets
        ("Measurement", None, None),
        ("DecodeError", "sync", 15),  # EB 00 00: impossible length, then 2 octets without sync
        ("DecodeError", "checksum", 25),  # bad_ck at stream offset 18, checksum octet 7
        ("Measurement", None, None),
    ]


def test_framer_rejects_overlong_length_as_false_sync() -> None:
    out = ContecBtFramer().feed(b"\xeb\x01\x40" + PARAMS_72_98)
    assert [type(r).__name__ for r in out] == ["DecodeError", "Measurement"]


@given(st.integers(min_value=1, max_value=len(PARAMS_72_98) * 3 - 1))
def test_framer_any_chunking(cut: int) -> None:
    stream = PARAMS_72_98 + WAVE_40 + PARAMS_MISSING
    whole = ContecBtFramer().feed(stream)
    f = ContecBtFramer()
    parts = f.feed(stream[:cut]) + f.feed(stream[cut:])
    assert (
        [r.raw for r in parts if isinstance(r, Measurement)]
        == [r.raw for r in whole if isinstance(r, Measurement)]
        == [PARAMS_72_98, PARAMS_MISSING]
    )


def test_registry_entry() -> None:
    (d,) = DRIVERS
    assert REGISTRY.get("contec-cms50d-bt") is d
    assert REGISTRY.by_characteristic("ff02") is d
    assert d.characteristic == CONTEC_BT_NOTIFY
    assert d.start_write == (CONTEC_BT_WRITE, START_COMMAND)
    assert d.framer is not None
    assert REGISTRY.match_advertisement("SpO208", []) == [d]
