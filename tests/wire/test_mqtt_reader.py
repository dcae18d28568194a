"""The sans-I/O packet reader: random splits, size limit, malformed input (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.mqtt import Message, ProtocolError
from wire.mqtt import _codec as codec

topics = st.text(
    alphabet=st.characters(blacklist_characters="\x00+#", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=40,
)


@st.composite
def packets(draw: st.DrawFn, v5: bool) -> bytes:
    kind = draw(st.sampled_from(["pub0", "pub1", "puback", "suback", "pingresp"]))
    if kind in ("pub0", "pub1"):
        qos = int(kind[-1])
        payload = draw(st.binary(max_size=400))
        mid = draw(st.integers(1, 65535)) if qos else 0
        return codec.publish(draw(topics), payload, qos, draw(st.booleans()), mid, v5=v5)
    if kind == "puback":
        return codec.puback(draw(st.integers(1, 65535)))
    if kind == "suback":
        return codec.packet(0x90, b"\x00\x01" + (b"\x00" if v5 else b"") + b"\x01")
    return b"\xd0\x00"


def _reader(v5: bool, limit: int = 1 << 20) -> codec.Reader:
    return codec.Reader(v5=v5, max_packet=limit, make_publish=Message)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.booleans())
def test_random_splits_give_the_same_packets_as_one_read(data: st.DataObject, v5: bool) -> None:
    stream = b"".join(data.draw(st.lists(packets(v5), min_size=1, max_size=12)))
    whole = _reader(v5).feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    r = _reader(v5)
    got: list[object] = []
    prev = 0
    for c in [*cuts, len(stream)]:
        got += r.feed(stream[prev:c])
        prev = c
    assert got == whole
    assert len(whole) >= 1


def test_a_packet_over_the_maximum_is_refused_from_its_header() -> None:
    r = _reader(True, limit=1000)
    header = b"\x30" + codec.varint(5000)  # a 5 kB PUBLISH: only its header has arrived
    with pytest.raises(ProtocolError):
        r.feed(header)
    first, after = _reader(True, limit=1000).feed(b"\xd0\x00" + header)
    assert first == (0xD0, b"") and isinstance(after, ProtocolError)
    assert _reader(True, limit=1000).feed(codec.publish("a", b"x" * 900, 0, False, 0, v5=True))


@pytest.mark.parametrize(
    "raw",
    [
        b"\x32\x03\x00\x01a",  # QoS 1 without packet id
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        b"\x30\x03\x00\x05a",  # topic longer than the packet
        b"\x30\x04\x00\x02\xff\xfe",  # topic not UTF-8
        b"\x30\x03\x00\x01\x00",  # NUL in topic
        b"\x32\x05\x00\x01a\x00\x00",  # packet id 0
        b"\x30\xff\xff\xff\xff\x01",  # 5-byte remaining length
    ],
)
def test_malformed_publishes_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        _reader(False).feed(raw + b"\x00" * 8)


@pytest.mark.parametrize(
    "props",
    [
        b"\x05\x11\x00\x00",  # u32 truncated
        b"\x03\x1f\x00\x09",  # string longer than the properties
        b"\x04\x1f\x00\x02\xff",  # truncated string
        b"\x02\x7f\x00",  # unknown property id
        b"\x09\x21\x00",  # length over the packet
        b"\x04\x1f\x00\x02\xc3\x28",  # string not UTF-8
    ],
)
def test_malformed_properties_are_protocol_errors_not_struct_errors(props: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.connack(b"\x00\x00" + props, v5=True)


def test_connack_limits_are_read() -> None:
    props = b"\x27\x00\x00\x01\x00" + b"\x24\x00" + b"\x25\x00" + b"\x12\x00\x03abc"
    ack = codec.connack(b"\x00\x00" + codec.varint(len(props)) + props, v5=True)
    assert (ack.maximum_packet_size, ack.maximum_qos, ack.retain_available) == (256, 0, False)
    assert ack.assigned_client_id == "abc"
    with pytest.raises(ProtocolError):  # Receive Maximum 0 is a protocol error (3.2.2.3.3)
        codec.connack(b"\x00\x00\x03\x21\x00\x00", v5=True)
