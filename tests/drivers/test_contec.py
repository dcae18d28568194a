"""Contec CMS50D+ (old protocol) and BerryMed BCI: the 5-octet live frame and its framer.

Vectors: atbrask/CMS50Dplus ``unittests.py`` (LiveDataPoint tests: bit positions, sync bits,
pulse-rate bit 7 in octet 2 b6) and zh2x/SpO2-BLE-for-Android
``app/src/main/java/com/berry_med/spo2_ble/data/DataParser.java`` (BerryMed: SpO2 = octet 4,
PR = octet 3 | (octet 2 & 0x40) << 1). Neither publishes a captured hex stream, so the frames
below are built from those bit layouts; each test names the source it follows.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import codes
from drivers._vendor import StreamFramer, check_spo2
from drivers.contec import (
    BERRYMED_KEY,
    CONTEC_KEY,
    DRIVERS,
    ContecFrame,
    ContecFramer,
    decode_berrymed,
    decode_contec,
)
from drivers.driver import SerialParams
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement, Observation, Quantity, Special
from tests.drivers.strategies import same


def spo2(value: int | Special) -> Observation:
    q = (
        Quantity(None, "%", codes.MDC_DIM_PERCENT, value)
        if isinstance(value, Special)
        else Quantity(D(value), "%", codes.MDC_DIM_PERCENT)
    )
    return Observation(codes.MDC_PULS_OXIM_SAT_O2, q, ("59408-5", "2708-6"))


def pr(value: int | Special) -> Observation:
    q = (
        Quantity(None, "/min", codes.MDC_DIM_BEAT_PER_MIN, value)
        if isinstance(value, Special)
        else Quantity(D(value), "/min", codes.MDC_DIM_BEAT_PER_MIN)
    )
    return Observation(codes.MDC_PULS_OXIM_PULS_RATE, q, ("8867-4",))


def frame(**kw: Any) -> ContecFrame:
    fields: dict[str, Any] = {
        "signal_strength": 0,
        "finger_out": False,
        "spo2_dropping": False,
        "pulse_beep": False,
        "pleth": 0,
        "bar_graph": 0,
        "probe_error": False,
        "searching": False,
        "pulse_rate": 0,
        "spo2": 0,
    }
    fields.update(kw)
    return ContecFrame(**fields)


def err(e: Measurement | DecodeError) -> tuple[str, str, int, str] | Measurement:
    """DecodeError compares by identity: compare its fields instead."""
    if isinstance(e, DecodeError):
        return (e.source, e.field, e.offset, e.reason)
    return e


# -- the frame ---------------------------------------------------------------------------------
def test_typical_frame() -> None:
    # B0 0x86: signal strength 6. B1 0x3F pleth 63. B2 0x05 bar graph 5. B3 0x48 PR 72. B4 0x61 97.
    data = bytes.fromhex("863f054861")
    same(
        ContecFrame.parse(data),
        frame(signal_strength=6, pleth=63, bar_graph=5, pulse_rate=72, spo2=97),
    )
    same(
        decode_contec(data),
        Measurement(CONTEC_KEY, data, (spo2(97), pr(72)), kind=Kind.CONTINUOUS),
    )


@pytest.mark.parametrize(
    ("data", "expected", "flags"),
    [
        # atbrask test_LiveData_fingerOut / droppingSpO2 / beep / probeError / searching.
        ("9000000000", frame(finger_out=True), ("finger-out",)),
        ("a000000000", frame(spo2_dropping=True), ("spo2-dropping",)),
        ("c000000000", frame(pulse_beep=True), ("pulse-beep",)),
        ("8000100000", frame(probe_error=True), ("probe-error",)),
        ("8000200000", frame(searching=True), ("searching",)),
    ],
)
def test_status_bits(data: str, expected: ContecFrame, flags: tuple[str, ...]) -> None:
    raw = bytes.fromhex(data)
    same(ContecFrame.parse(raw), expected)
    same(
        decode_contec(raw),
        Measurement(CONTEC_KEY, raw, (spo2(0), pr(0)), kind=Kind.CONTINUOUS, flags=flags),
    )
    assert expected.encode() == raw


def test_all_status_bits_in_order() -> None:
    raw = bytes.fromhex("f07f3f7f7f")  # every flag, signal 0, pleth 127, bar 15, PR 255, SpO2 127
    rec = ContecFrame.parse(raw)
    same(
        rec,
        frame(
            finger_out=True,
            spo2_dropping=True,
            pulse_beep=True,
            pleth=127,
            bar_graph=15,
            probe_error=True,
            searching=True,
            pulse_rate=127,
            spo2=127,
        ),
    )
    assert rec.flags == ("finger-out", "spo2-dropping", "pulse-beep", "probe-error", "searching")


@pytest.mark.parametrize("value", range(256))
def test_pulse_rate_bit7_in_octet2(value: int) -> None:
    # atbrask test_LiveData_pulseRate: highbit = (x & 0x80) >> 1 in octet 2, low 7 bits in octet 3.
    raw = bytes((0x80, 0, (value & 0x80) >> 1, value & 0x7F, 0))
    rec = ContecFrame.parse(raw)
    assert rec.pulse_rate == value
    assert rec.encode() == raw


@pytest.mark.parametrize("value", [*range(101), 127])
def test_spo2_values(value: int) -> None:
    # atbrask test_LiveData_bloodSpO2 covers 0..127; 101..126 are rejected here (see below).
    raw = bytes((0x80, 0, 0, 0, value))
    assert ContecFrame.parse(raw).spo2 == value


def test_missing_markers() -> None:
    # BerryMed BCI: PR 255 and SpO2 127 are invalid. PR 255 = octet 2 b6 + octet 3 0x7F.
    raw = bytes.fromhex("8000407f7f")
    same(
        decode_contec(raw),
        Measurement(
            CONTEC_KEY, raw, (spo2(Special.MISSING), pr(Special.MISSING)), kind=Kind.CONTINUOUS
        ),
    )


def test_berrymed_decodes_the_same_layout() -> None:
    # DataParser.java: spo2 = p[4] = 0x62 (98), PR = p[3] | (p[2] & 0x40) << 1 = 0x05 | 0x80 = 133.
    raw = bytes.fromhex("8a20450562")
    same(
        decode_berrymed(raw),
        Measurement(BERRYMED_KEY, raw, (spo2(98), pr(133)), kind=Kind.CONTINUOUS),
    )


# -- DecodeError paths -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("80000000", "frame", 0, "a frame is 5 octets, got 4"),  # atbrask init_length
        ("800000000000", "frame", 0, "a frame is 5 octets, got 6"),
        # atbrask test_LiveData_init_syncbit: each misplaced sync bit is rejected.
        ("0000000000", "sync", 0, "b7 of octet 0 must be set"),
        ("0080000000", "sync", 0, "b7 of octet 0 must be set"),
        ("8080000000", "sync", 1, "b7 of octet 1 must be clear"),
        ("8000800000", "sync", 2, "b7 of octet 2 must be clear"),
        ("8000008000", "sync", 3, "b7 of octet 3 must be clear"),
        ("8000000080", "sync", 4, "b7 of octet 4 must be clear"),
        ("8000000065", "spo2", 4, "101 is neither 0..100 % nor 127 (missing)"),
        ("800000007e", "spo2", 4, "126 is neither 0..100 % nor 127 (missing)"),
    ],
)
def test_decode_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_contec(bytes.fromhex(data))
    assert (exc.value.source, exc.value.field, exc.value.offset, exc.value.reason) == (
        CONTEC_KEY,
        field,
        offset,
        reason,
    )


def test_berrymed_errors_carry_their_source() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_berrymed(bytes.fromhex("0000000000"))
    assert exc.value.source == BERRYMED_KEY


def test_check_spo2() -> None:
    check_spo2(0, "x", "spo2", 0)
    check_spo2(100, "x", "spo2", 0)
    check_spo2(127, "x", "spo2", 0)
    for bad in (101, 126, 128, 255, -1):
        with pytest.raises(DecodeError):
            check_spo2(bad, "x", "spo2", 0)


# -- the framer --------------------------------------------------------------------------------
def test_framer_splits_resyncs_and_reports() -> None:
    good = bytes.fromhex("863f054861")
    bad_spo2 = bytes.fromhex("8000000070")  # well synchronised, SpO2 112
    stream = (
        b"\x12\x34"  # joined mid-frame: 2 octets without a frame start
        + good
        + bytes.fromhex("8601")  # frame cut short: next octet has b7 set
        + good
        + bad_spo2
        + good[:3]
    )
    f = ContecFramer()
    out = f.feed(stream)
    m = decode_contec(good)
    assert [err(x) for x in out] == [
        (CONTEC_KEY, "sync", 0, "no frame start (b7 clear); discarded 2 octet(s) to resynchronise"),
        m,
        (
            CONTEC_KEY,
            "sync",
            7,
            "frame cut short: b7 set in octet 2; discarded 2 octet(s) to resynchronise",
        ),
        m,
        (CONTEC_KEY, "spo2", 14 + 4, "112 is neither 0..100 % nor 127 (missing)"),
    ]
    assert f.feed(good[3:]) == [m]


def test_berrymed_framer_source() -> None:
    (driver,) = [d for d in DRIVERS if d.key == BERRYMED_KEY]
    assert driver.framer is not None
    raw = bytes.fromhex("8a20450562")
    assert driver.framer().feed(raw) == [decode_berrymed(raw)]


def test_registry_entries() -> None:
    contec, berrymed = DRIVERS
    assert (contec.key, contec.transport, contec.kind) == (CONTEC_KEY, "serial", Kind.CONTINUOUS)
    assert contec.usb_ids == ((0x10C4, 0xEA60),)
    assert contec.serial == SerialParams(baudrate=19200, bytesize=8, parity="O", stopbits=1)
    assert contec.decode is decode_contec
    assert contec.framer is not None and isinstance(contec.framer(), ContecFramer)
    assert (berrymed.key, berrymed.transport) == (BERRYMED_KEY, "ble")
    assert berrymed.service == "49535343-fe7d-4ae5-8fa9-9fafd205e455"
    assert berrymed.characteristic == "49535343-1e4d-4bd9-ba61-23c647249616"
    assert berrymed.name_patterns == (r"^BerryMed",)


# -- properties --------------------------------------------------------------------------------
frames = st.builds(
    ContecFrame,
    signal_strength=st.integers(0, 15),
    finger_out=st.booleans(),
    spo2_dropping=st.booleans(),
    pulse_beep=st.booleans(),
    pleth=st.integers(0, 127),
    bar_graph=st.integers(0, 15),
    probe_error=st.booleans(),
    searching=st.booleans(),
    pulse_rate=st.integers(0, 255),
    spo2=st.one_of(st.integers(0, 100), st.just(127)),
)


@given(frames)
def test_roundtrip(rec: ContecFrame) -> None:
    assert ContecFrame.parse(rec.encode()) == rec


@given(st.binary(max_size=12))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        m = decode_contec(data)
    except DecodeError:
        return
    assert (m.source, m.raw, len(m.observations)) == (CONTEC_KEY, data, 2)


def feed_in_chunks(framer: StreamFramer, stream: bytes, cuts: list[int]) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for size in cuts:
        out += framer.feed(stream[pos : pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    return [err(x) for x in out]


streams = st.lists(st.one_of(frames.map(ContecFrame.encode), st.binary(max_size=7))).map(b"".join)


@given(streams, st.lists(st.integers(1, 11), max_size=40))
def test_framer_chunking_does_not_matter(stream: bytes, cuts: list[int]) -> None:
    whole = [err(x) for x in ContecFramer().feed(stream)]
    assert feed_in_chunks(ContecFramer(), stream, cuts) == whole


@given(st.lists(frames, max_size=20))
def test_framer_returns_every_valid_frame(recs: list[ContecFrame]) -> None:
    stream = b"".join(r.encode() for r in recs)
    assert ContecFramer().feed(stream) == [decode_contec(r.encode()) for r in recs]


def test_each_vendor_names_its_own_status_bits() -> None:
    # Built by hand from reference §6.3 (names in brackets = BerryMed BCI): B0 0xF0 = sync | b4
    # | b5 | b6, B2 0x30 = b4 | b5, PR 0x48 = 72, SpO2 0x61 = 97.
    raw = bytes.fromhex("f000304861")
    assert decode_contec(raw).flags == (
        "finger-out",
        "spo2-dropping",
        "pulse-beep",
        "probe-error",
        "searching",
    )
    assert decode_berrymed(raw).flags == (
        "no-signal",
        "probe-unplugged",
        "pulse-beep",
        "no-finger",
        "searching",
    )
    # B0 0x90 = sync | b4 only: "no signal" on a BerryMed, not "finger out".
    assert decode_berrymed(bytes.fromhex("9000004861")).flags == ("no-signal",)
