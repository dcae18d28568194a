"""Jumper JPD-500F BLE oximeter: the 0x81 parameter frame and the stream framer.

Vectors: the smarttelemed Flutter client ``lib/core/device/add_device/jumper_po_jpd_500f.dart``
documents ``81 38 63 44`` -> PR 56, SpO2 99 (its 4th octet, 0x44, is the PI: 6.8 %); the AGILE
``org.eclipse.agail.device.instance.MedicalDevice`` driver reads PI = octet 3 / 10 and accepts
only 4-octet 0x81 notifications; a Web-Bluetooth resolver maps PR 255, SpO2 127 and PI 0 to "no
value" (reference §6.4: PR 255 / SpO2 127 invalid).
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers.errors import DecodeError
from drivers.jumper import DRIVERS, JUMPER_KEY, JumperFramer, JumperParams, decode_jumper
from drivers.observation import Kind, Measurement, Observation, Quantity, Special
from tests.drivers.strategies import same


def _q(value: str | Special, unit: str, mdc_unit: int) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit, mdc_unit, value)
    return Quantity(D(value), unit, mdc_unit)


def obs(spo2: str | Special, pr: str | Special, pi: str | Special) -> tuple[Observation, ...]:
    pct = ("%", codes.MDC_DIM_PERCENT)
    return (
        Observation(codes.MDC_PULS_OXIM_SAT_O2, _q(spo2, *pct), ("59408-5", "2708-6")),
        Observation(
            codes.MDC_PULS_OXIM_PULS_RATE,
            _q(pr, "/min", codes.MDC_DIM_BEAT_PER_MIN),
            ("8867-4",),
        ),
        Observation(codes.MDC_PULS_OXIM_PERF_REL, _q(pi, *pct)),
    )


def fields(e: Measurement | DecodeError) -> Any:
    if isinstance(e, DecodeError):
        return (e.source, e.field, e.offset, e.reason)
    return e


def test_published_example() -> None:
    data = bytes.fromhex("81386344")  # jumper_po_jpd_500f.dart: PR 0x38 = 56, SpO2 0x63 = 99
    same(JumperParams.parse(data), JumperParams(56, 99, 68))
    same(
        decode_jumper(data),
        Measurement(JUMPER_KEY, data, obs("99", "56", "6.8"), kind=Kind.CONTINUOUS),
    )


def test_missing_markers() -> None:
    data = bytes.fromhex("81ff7f00")
    same(
        decode_jumper(data),
        Measurement(
            JUMPER_KEY,
            data,
            obs(Special.MISSING, Special.MISSING, Special.MISSING),
            kind=Kind.CONTINUOUS,
        ),
    )


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("813863", "frame", 0, "a frame is 4 octets, got 3"),
        ("8138634400", "frame", 0, "a frame is 4 octets, got 5"),
        ("80386344", "type", 0, "0x80 is not a 0x81 frame"),
        ("81386544", "spo2", 2, "101 is neither 0..100 % nor 127 (missing)"),
        ("8138ff44", "spo2", 2, "255 is neither 0..100 % nor 127 (missing)"),
    ],
)
def test_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_jumper(bytes.fromhex(data))
    assert fields(exc.value) == (JUMPER_KEY, field, offset, reason)


def test_framer_skips_idle_and_waveform_and_handles_split_frames() -> None:
    a, b = bytes.fromhex("81386344"), bytes.fromhex("81ff7f00")
    f = JumperFramer()
    # idle octets (0x2D) before the finger goes in, a waveform frame, a parameter frame split
    # across notifications, then two frames in one notification.
    assert f.feed(b"\x2d" * 5) == []
    assert f.feed(bytes.fromhex("80 10 20 30 40 81 38".replace(" ", ""))) == []
    assert f.feed(bytes.fromhex("6344") + b + a) == [
        decode_jumper(a),
        decode_jumper(b),
        decode_jumper(a),
    ]


def test_framer_false_header_with_impossible_spo2_costs_one_error() -> None:
    a = bytes.fromhex("81386344")
    f = JumperFramer()
    out = f.feed(bytes.fromhex("80 81 10 f0 20".replace(" ", "")) + a)  # 0x81 inside a waveform
    assert [fields(x) for x in out] == [
        (JUMPER_KEY, "spo2", 1 + 2, "240 is neither 0..100 % nor 127 (missing)"),
        decode_jumper(a),
    ]


def test_framer_false_header_with_plausible_octets_is_read_as_a_frame() -> None:
    # The documented limit of the framing assumption (waveform octets never equal 0x81).
    f = JumperFramer()
    out = f.feed(bytes.fromhex("80 81 10 2d 20".replace(" ", "")))
    assert out == [decode_jumper(bytes.fromhex("81102d20"))]


def test_registry_entry() -> None:
    (d,) = DRIVERS
    assert (d.key, d.transport, d.kind, d.decode) == (
        JUMPER_KEY,
        "ble",
        Kind.CONTINUOUS,
        decode_jumper,
    )
    assert d.service == "cdeacb80-5235-4c07-8846-93a37ee6b86d"
    assert d.characteristic == "cdeacb81-5235-4c07-8846-93a37ee6b86d"
    assert d.framer is not None and isinstance(d.framer(), JumperFramer)


params = st.builds(
    JumperParams,
    pulse_rate=st.integers(0, 255),
    spo2=st.one_of(st.integers(0, 100), st.just(127)),
    pi=st.integers(0, 255),
)


@given(params)
def test_roundtrip(rec: JumperParams) -> None:
    assert JumperParams.parse(rec.encode()) == rec


@given(st.binary(max_size=6))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_jumper(data)
    except DecodeError:
        return
    assert (m.raw, len(m.observations)) == (data, 3)


streams = st.lists(st.one_of(params.map(JumperParams.encode), st.binary(max_size=8))).map(b"".join)


@given(streams, st.lists(st.integers(1, 9), max_size=30))
def test_framer_chunking_does_not_matter(stream: bytes, cuts: list[int]) -> None:
    whole = [fields(x) for x in JumperFramer().feed(stream)]
    f = JumperFramer()
    out: list[Any] = []
    pos = 0
    for size in cuts:
        out += f.feed(stream[pos : pos + size])
        pos += size
    out += f.feed(stream[pos:])
    assert [fields(x) for x in out] == whole


@given(st.lists(params, max_size=20), st.sampled_from([b"", b"\x2d", bytes.fromhex("80102030")]))
def test_framer_returns_every_frame(recs: list[JumperParams], filler: bytes) -> None:
    stream = b"".join(filler + r.encode() for r in recs)
    assert JumperFramer().feed(stream) == [decode_jumper(r.encode()) for r in recs]
