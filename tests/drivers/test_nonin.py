"""Nonin BLE Oximetry Measurement, serial Data Format 2 and Data Format 8.

Vectors:
* DF2: pez-globo/pufferfish-software
  ``firmware/ventilator-controller-stm32/Core/Test/Pufferfish/Driver/Serial/Nonin/TestNoninOEM3.cpp``
  (a complete 125-octet packet: HR 72, SpO2 97, revision 48; a checksum error; a STATUS b7 error;
  a packet cut short by the next SYNC frame).
* DF8: layout of silverbullet-dk/opentele-client-android ``…/device/nonin/packet/
  NoninMeasurementPacket.java`` (HR = (STATUS1 & 3) << 7 + octet 1; SmartPoint 0x20 and low
  battery 0x01 in STATUS2) and drphrozen/javautilityclasses ``NoninAndroid/src/dk/iha/nonin/
  Format8.java`` (STATUS1 bit names). No hex capture is public: frames are built from the layout.
* BLE: layout of the Nonin 3150 Python client (``struct.unpack('>b?bhhbh')``) and the
  ble_nco_spec_decoder.swift decoder (Nonin 113142-000-02); frames built from the layout.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import _cursor as c
from drivers import codes
from drivers._vendor import StreamFramer
from drivers.driver import SerialParams
from drivers.errors import DecodeError
from drivers.nonin import (
    BLE_KEY,
    BLE_STATUS,
    DF2_KEY,
    DF2_STATUS,
    DF8_KEY,
    DF8_STATUS1,
    DRIVERS,
    NoninBleRecord,
    NoninDf2Frame,
    NoninDf2Framer,
    NoninDf2Packet,
    NoninDf8Framer,
    NoninDf8Packet,
    decode_ble,
    decode_df2,
    decode_df8,
)
from drivers.observation import Kind, Measurement, Observation, Quantity, Special
from tests.drivers.strategies import flag_subsets, same


def _q(value: int | str | Special, unit: str, mdc_unit: int) -> Quantity:
    if isinstance(value, Special):
        return Quantity(None, unit, mdc_unit, value)
    return Quantity(D(value), unit, mdc_unit)


def spo2(value: int | Special) -> Observation:
    return Observation(
        codes.MDC_PULS_OXIM_SAT_O2, _q(value, "%", codes.MDC_DIM_PERCENT), ("59408-5", "2708-6")
    )


def pr(value: int | Special) -> Observation:
    return Observation(
        codes.MDC_PULS_OXIM_PULS_RATE, _q(value, "/min", codes.MDC_DIM_BEAT_PER_MIN), ("8867-4",)
    )


def pai(value: str) -> Observation:
    return Observation(codes.MDC_PULS_OXIM_PERF_REL, _q(value, "%", codes.MDC_DIM_PERCENT))


def fields(e: Measurement | DecodeError) -> Any:
    """DecodeError compares by identity: compare its fields instead."""
    if isinstance(e, DecodeError):
        return (e.source, e.field, e.offset, e.reason)
    return e


def resync(reason: str, n: int) -> str:
    return f"{reason}; discarded {n} octet(s) to resynchronise"


SYNC_ONLY_0 = "SYNC (b0) must be set in frame 0 only"
BAD_SUM = "0xcb != 0xca (sum of octets 0-3)"
BAD_101 = "101 is neither 0..100 % nor 127 (missing)"


def feed_in_chunks(framer: StreamFramer, stream: bytes, cuts: list[int]) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for size in cuts:
        out += framer.feed(stream[pos : pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    return [fields(x) for x in out]


# == BLE =======================================================================================
def test_ble_typical() -> None:
    # length 10, status 0x15 = display sync + SmartPoint + CorrectCheck, battery 3.0 V (0x1E),
    # PAI 2.00 % (0x00C8, big-endian), counter 42 (0x002A), SpO2 97 (0x61), PR 72 (0x0048).
    data = bytes.fromhex("0a151e00c8002a610048")
    rec = NoninBleRecord(("display-sync", "smartpoint", "correct-check"), 30, 200, 42, 97, 72)
    same(NoninBleRecord.parse(data), rec)
    assert rec.encode() == data
    same(
        decode_ble(data),
        Measurement(
            BLE_KEY,
            data,
            (spo2(97), pr(72), pai("2.00")),
            kind=Kind.CONTINUOUS,
            flags=("display-sync", "smartpoint", "correct-check"),
        ),
    )


def test_ble_big_endian_and_missing() -> None:
    # Every status bit incl. reserved b7 (ignored), PAI 0x0102 = 2.58 %, counter 0x0304 = 772 s,
    # SpO2 127 and PR 511 (0x01FF) = missing, plus one trailing octet.
    data = bytes.fromhex("0aff2501020304" + "7f01ff" + "00")
    status = tuple(BLE_STATUS)
    same(NoninBleRecord.parse(data), NoninBleRecord(status, 0x25, 258, 772, 127, 511))
    same(
        decode_ble(data),
        Measurement(
            BLE_KEY,
            data,
            (spo2(Special.MISSING), pr(Special.MISSING), pai("2.58")),
            kind=Kind.CONTINUOUS,
            flags=(*status, "trailing-octets:1"),
        ),
    )


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("", "packet length", 0, "truncated: needs 1 octet(s), 0 left"),
        ("09151e00c8002a610048", "packet length", 0, "9 < 10"),
        ("0a151e00c8002a6100", "pulse rate", 8, "truncated: needs 2 octet(s), 1 left"),
        ("0a151e00c8002a650048", "spo2", 7, "101 is neither 0..100 % nor 127 (missing)"),
        ("0a151e00c8002a800048", "spo2", 7, "128 is neither 0..100 % nor 127 (missing)"),
    ],
)
def test_ble_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_ble(bytes.fromhex(data))
    assert fields(exc.value) == (BLE_KEY, field, offset, reason)


ble_records = st.builds(
    NoninBleRecord,
    status=flag_subsets(BLE_STATUS),
    battery_decivolts=st.integers(0, 255),
    pai=st.integers(0, 0xFFFF),
    counter=st.integers(0, 0xFFFF),
    spo2=st.one_of(st.integers(0, 100), st.just(127)),
    pulse_rate=st.integers(0, 0xFFFF),
)


@given(ble_records)
def test_ble_roundtrip(rec: NoninBleRecord) -> None:
    assert NoninBleRecord.parse(rec.encode()) == rec


@given(st.binary(max_size=14))
def test_ble_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_ble(data)
    except DecodeError:
        return
    assert (m.raw, len(m.observations)) == (data, 3)


# == Data Format 2 =============================================================================
# pufferfish TestNoninOEM3.cpp, "Validate NoninOEM3 for valid packet data": 125 octets.
PUFFERFISH_PACKET = bytes.fromhex(
    "".join(
        [
            "0181010083",  # frame 0: SYNC, HR MSB 0
            "01800148ca",  # 1: HR LSB 72
            "01800161e3",  # 2: SpO2 97
            "01800130b2",  # 3: revision 48
            *["0180010082"] * 4,  # 4-7: reserved
            *["01800161e3"] * 3,  # 8-10: SpO2-D, SpO2 fast, SpO2 beat-to-beat
            *["0180010082"] * 3,  # 11-12: reserved, 13: E-HR MSB
            "01800148ca",  # 14: E-HR LSB
            *["01800161e3"] * 2,  # 15-16: E-SpO2, E-SpO2-D
            *["0180010082"] * 3,  # 17-18: reserved, 19: HR-D MSB
            "01800148ca",  # 20: HR-D LSB
            "0180010082",  # 21: E-HR-D MSB
            "01800148ca",  # 22: E-HR-D LSB
            *["0180010082"] * 2,  # 23-24: reserved
        ]
    )
)


def test_df2_pufferfish_packet() -> None:
    assert len(PUFFERFISH_PACKET) == 125
    packet = NoninDf2Packet.parse(PUFFERFISH_PACKET)
    named = (
        packet.hr,
        packet.hr_display,
        packet.e_hr,
        packet.e_hr_display,
        packet.spo2,
        packet.spo2_display,
        packet.e_spo2,
        packet.e_spo2_display,
        packet.spo2_beat_to_beat,
        packet.spo2_fast,
        packet.firmware_revision,
    )
    # the REQUIREs of the pufferfish test, in its order
    assert named == (72, 72, 72, 72, 97, 97, 97, 97, 97, 97, 48)
    assert packet.frames[0] == NoninDf2Frame(True, "none", (), 0x01, 0x00)
    assert packet.frames[1] == NoninDf2Frame(False, "none", (), 0x01, 0x48)
    assert packet.encode() == PUFFERFISH_PACKET
    same(
        decode_df2(PUFFERFISH_PACKET),
        Measurement(DF2_KEY, PUFFERFISH_PACKET, (spo2(97), pr(72)), kind=Kind.CONTINUOUS),
    )


def test_df2_pufferfish_stream_through_framer() -> None:
    f = NoninDf2Framer()
    assert f.feed(PUFFERFISH_PACKET[:124]) == []
    assert f.feed(PUFFERFISH_PACKET[124:]) == [decode_df2(PUFFERFISH_PACKET)]


def df2_frame(status: int, pleth: int, value: int) -> bytes:
    body = bytes((1, status, pleth, value))
    return body + bytes((sum(body) & 0xFF,))


def test_df2_status_flags_are_the_union_over_frames() -> None:
    frames = [df2_frame(0x83, 0x10, 0x01)]  # SYNC, green perfusion, HR bits 8-7 = 01
    frames.append(df2_frame(0x80 | 0x20, 0x10, 0x2C))  # artifact; HR = 128 + 44 = 172
    frames.append(df2_frame(0x80 | 0x08 | 0x06, 0x10, 0x7F))  # sensor alarm, yellow; SpO2 127
    frames += [df2_frame(0x84 | 0x40 | 0x10, 0, 0)] * 22  # red, SNSD, OOT
    data = b"".join(frames)
    packet = NoninDf2Packet.parse(data)
    assert packet.frames[2] == NoninDf2Frame(False, "yellow", ("sensor-alarm",), 0x10, 0x7F)
    same(
        decode_df2(data),
        Measurement(
            DF2_KEY,
            data,
            (spo2(Special.MISSING), pr(172)),
            kind=Kind.CONTINUOUS,
            flags=(
                "sensor-alarm",
                "out-of-track",
                "artifact",
                "sensor-disconnect",
                "perfusion-green",
                "perfusion-red",
                "perfusion-yellow",
            ),
        ),
    )


def test_df2_missing_pulse_rate() -> None:
    data = bytearray(PUFFERFISH_PACKET)
    data[0:5] = df2_frame(0x81, 0x01, 0x03)  # HR MSB bits 8-7 = 11
    data[5:10] = df2_frame(0x80, 0x01, 0x7F)  # HR LSB 127 -> 511
    assert decode_df2(bytes(data)).observations == (spo2(97), pr(Special.MISSING))


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("01810100", "frame", 0, "a frame is 5 octets, got 4"),
        ("0281010084", "start", 0, "start octet 0x02 is not 0x01"),
        # pufferfish: "status byte error (Bit-7 is low)"
        ("017f0148c9", "status", 1, "b7 of STATUS must be set"),
        # pufferfish: "checksum error in 2nd frame" (0xCB instead of 0xCA)
        ("01800148cb", "checksum", 4, "0xcb != 0xca (sum of octets 0-3)"),
    ],
)
def test_df2_frame_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        NoninDf2Frame.parse(bytes.fromhex(data))
    assert fields(exc.value) == (DF2_KEY, field, offset, reason)


def _replace(frame: int, raw: bytes) -> bytes:
    data = bytearray(PUFFERFISH_PACKET)
    data[frame * 5 : frame * 5 + 5] = raw
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        (PUFFERFISH_PACKET[:120], "packet", 0, "a packet is 125 octets, got 120"),
        (_replace(1, bytes.fromhex("01800148cb")), "frame 1.checksum", 9, BAD_SUM),
        (_replace(0, df2_frame(0x80, 1, 0)), "frame 0.status", 1, SYNC_ONLY_0),
        (_replace(7, df2_frame(0x81, 1, 0)), "frame 7.status", 36, SYNC_ONLY_0),
        (_replace(2, df2_frame(0x80, 1, 101)), "frame 2.spo2", 13, BAD_101),
    ],
)  # fmt: skip
def test_df2_packet_errors(data: bytes, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_df2(data)
    assert fields(exc.value) == (DF2_KEY, field, offset, reason)


def test_df2_packet_needs_25_frames() -> None:
    with pytest.raises(ValueError, match="25 frames"):
        NoninDf2Packet(NoninDf2Packet.parse(PUFFERFISH_PACKET).frames[:24])


def test_df2_framer_resyncs_and_reports() -> None:
    p = PUFFERFISH_PACKET
    # pufferfish "Valid 24 frames": 23 frames of a packet, then the next packet's SYNC frame.
    cut_short = p[:115]
    bad_spo2 = _replace(2, df2_frame(0x80, 1, 120))
    sum_e3_e2 = "0xe3 != 0xe2 (sum of octets 0-3)"
    bad_checksum = p[:12] + b"\x00" + p[13:]  # frame 2 corrupted: the partial packet is dropped
    stream = p[3:] + cut_short + p + bad_spo2 + bad_checksum + p
    f = NoninDf2Framer()
    out = [fields(x) for x in f.feed(stream)]
    m = decode_df2(p)
    base = 122  # p[3:] is 122 octets
    assert out == [
        # joined mid-frame: 2 octets before a valid (non-SYNC) frame; frames until SYNC: silent
        (DF2_KEY, "sync", 0, resync("bad start: start octet 0x00 is not 0x01", 2)),
        (DF2_KEY, "packet", base, "incomplete: 23 of 25 frames before the next SYNC frame"),
        m,
        (DF2_KEY, "frame 2.spo2", base + 240 + 13, "120 is neither 0..100 % nor 127 (missing)"),
        (DF2_KEY, "sync", base + 365 + 10, resync(f"bad checksum: {sum_e3_e2}", 5)),
        m,
    ]  # fmt: skip


df2_frames = st.builds(
    NoninDf2Frame,
    sync=st.booleans(),
    perfusion=st.sampled_from(["none", "green", "red", "yellow"]),
    status=flag_subsets(DF2_STATUS),
    pleth=st.integers(0, 255),
    value=st.integers(0, 255),
)


@st.composite
def df2_packets(draw: st.DrawFn) -> NoninDf2Packet:
    frames = [
        NoninDf2Frame(
            i == 0,
            draw(st.sampled_from(["none", "green", "red", "yellow"])),
            draw(flag_subsets(DF2_STATUS)),
            draw(st.integers(0, 255)),
            draw(st.one_of(st.integers(0, 100), st.just(127)) if i == 2 else st.integers(0, 255)),
        )
        for i in range(25)
    ]
    return NoninDf2Packet(tuple(frames))


@given(df2_frames)
def test_df2_frame_roundtrip(rec: NoninDf2Frame) -> None:
    assert NoninDf2Frame.parse(rec.encode()) == rec


@given(df2_packets())
def test_df2_packet_roundtrip(rec: NoninDf2Packet) -> None:
    assert NoninDf2Packet.parse(rec.encode()) == rec
    assert NoninDf2Framer().feed(rec.encode()) == [decode_df2(rec.encode())]


@given(st.binary(max_size=130))
def test_df2_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_df2(data)
    except DecodeError:
        return
    assert (m.raw, len(m.observations)) == (data, 2)


df2_streams = st.lists(
    st.one_of(
        df2_packets().map(NoninDf2Packet.encode),
        df2_frames.map(NoninDf2Frame.encode),
        st.binary(max_size=6),
    ),
    max_size=8,
).map(b"".join)


@given(df2_streams, st.lists(st.integers(1, 60), max_size=30))
def test_df2_framer_chunking_does_not_matter(stream: bytes, cuts: list[int]) -> None:
    whole = [fields(x) for x in NoninDf2Framer().feed(stream)]
    assert feed_in_chunks(NoninDf2Framer(), stream, cuts) == whole


# == Data Format 8 =============================================================================
def test_df8_typical() -> None:
    # OpenTele layout: STATUS1 0x80 (sync only), HR LSB 72, SpO2 97, STATUS2 0x20 SmartPoint.
    data = bytes.fromhex("80486120")
    rec = NoninDf8Packet((), 72, 97, 0x20)
    same(NoninDf8Packet.parse(data), rec)
    assert rec.encode() == data
    same(
        decode_df8(data),
        Measurement(DF8_KEY, data, (spo2(97), pr(72)), kind=Kind.CONTINUOUS, flags=("smartpoint",)),
    )


def test_df8_high_pulse_rate_and_all_flags() -> None:
    # HR 300 = 0b10_0101100: bits 8-7 = 10 in STATUS1 b1-0, LSB 0x2C. STATUS1 all flags = 0xFE.
    # STATUS2 0xFF: only the two agreed bits are named; the record keeps the rest raw.
    data = bytes.fromhex("fe2c5fff")
    rec = NoninDf8Packet(tuple(DF8_STATUS1), 300, 95, 0xFF)
    same(NoninDf8Packet.parse(data), rec)
    same(
        decode_df8(data),
        Measurement(
            DF8_KEY,
            data,
            (spo2(95), pr(300)),
            kind=Kind.CONTINUOUS,
            flags=(*DF8_STATUS1, "low-battery", "smartpoint"),
        ),
    )


def test_df8_missing() -> None:
    data = bytes.fromhex("c37f7f00")  # sensor disconnect, HR 511, SpO2 127
    same(
        decode_df8(data),
        Measurement(
            DF8_KEY,
            data,
            (spo2(Special.MISSING), pr(Special.MISSING)),
            kind=Kind.CONTINUOUS,
            flags=("sensor-disconnect",),
        ),
    )


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("804861", "packet", 0, "a packet is 4 octets, got 3"),
        ("0048610020", "packet", 0, "a packet is 4 octets, got 5"),
        ("00486120", "status1", 0, "b7 of STATUS1 must be set"),
        ("80c86120", "hr lsb", 1, "b7 of the HR LSB octet must be clear"),
        ("80486e20", "spo2", 2, "110 is neither 0..100 % nor 127 (missing)"),
    ],
)
def test_df8_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_df8(bytes.fromhex(data))
    assert fields(exc.value) == (DF8_KEY, field, offset, reason)


def test_df8_framer() -> None:
    good = bytes.fromhex("80486120")
    # ACK of the "select DF8" command, a candidate with b7 in the SpO2 octet, an impossible SpO2.
    stream = b"\x06" + good + bytes.fromhex("80 48 e1".replace(" ", "")) + good
    stream += bytes.fromhex("80486e20") + good[:2]
    f = NoninDf8Framer()
    out = [fields(x) for x in f.feed(stream)]
    m = decode_df8(good)
    assert out == [
        (DF8_KEY, "sync", 0, resync("no STATUS1 (b7 clear)", 1)),
        m,
        (DF8_KEY, "sync", 5, resync("b7 set in the HR LSB or SpO2 octet", 3)),
        m,
        (DF8_KEY, "spo2", 12 + 2, "110 is neither 0..100 % nor 127 (missing)"),
    ]  # fmt: skip
    assert f.feed(good[2:]) == [m]


df8_packets = st.builds(
    NoninDf8Packet,
    status=flag_subsets(DF8_STATUS1),
    pulse_rate=st.integers(0, 511),
    spo2=st.one_of(st.integers(0, 100), st.just(127)),
    status2=st.integers(0, 255),
)


@given(df8_packets)
def test_df8_roundtrip(rec: NoninDf8Packet) -> None:
    assert NoninDf8Packet.parse(rec.encode()) == rec


@given(st.binary(max_size=6))
def test_df8_arbitrary_bytes(data: bytes) -> None:
    try:
        m = decode_df8(data)
    except DecodeError:
        return
    assert (m.raw, len(m.observations)) == (data, 2)


df8_streams = st.lists(
    st.one_of(df8_packets.map(NoninDf8Packet.encode), st.binary(max_size=5)), max_size=20
).map(b"".join)


@given(df8_streams, st.lists(st.integers(1, 9), max_size=30))
def test_df8_framer_chunking_does_not_matter(stream: bytes, cuts: list[int]) -> None:
    whole = [fields(x) for x in NoninDf8Framer().feed(stream)]
    assert feed_in_chunks(NoninDf8Framer(), stream, cuts) == whole


@given(st.lists(df8_packets, max_size=20))
def test_df8_framer_returns_every_packet(recs: list[NoninDf8Packet]) -> None:
    stream = b"".join(r.encode() for r in recs)
    assert NoninDf8Framer().feed(stream) == [decode_df8(r.encode()) for r in recs]


# == registry ==================================================================================
def test_registry_entries() -> None:
    ble, df2, df8 = DRIVERS
    assert (ble.key, ble.transport, ble.kind, ble.framer) == (
        BLE_KEY,
        "ble",
        Kind.CONTINUOUS,
        None,
    )
    assert ble.service == "46a970e0-0d5f-11e2-8b5e-0002a5d5c51b"
    assert ble.characteristic == "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b"
    assert ble.name_patterns == (r"^Nonin3230_", r"^Nonin3150_")
    assert (df2.key, df2.transport, df2.serial) == (DF2_KEY, "serial", SerialParams(9600))
    assert df2.framer is not None and isinstance(df2.framer(), NoninDf2Framer)
    assert (df8.key, df8.transport, df8.decode) == (DF8_KEY, "serial", decode_df8)
    assert df8.name_patterns == (r"^Nonin_Medical_Inc\._\d{6}$",)
    assert df8.framer is not None and isinstance(df8.framer(), NoninDf8Framer)
    assert c.bit_names(0x7F, BLE_STATUS) == tuple(BLE_STATUS)
