"""The MQTT packet codec (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.mqtt import ProtocolError
from wire.mqtt import _codec as codec


@given(st.integers(min_value=0, max_value=268_435_455))
def test_variable_byte_integers_round_trip(n: int) -> None:
    b = codec.varint(n)
    assert codec.read_varint(b + b"\xff", 0) == (n, len(b))
    assert codec.read_varint(b[:-1], 0) is None


def test_a_five_byte_integer_is_malformed() -> None:
    with pytest.raises(ProtocolError):
        codec.read_varint(b"\xff\xff\xff\xff\x01", 0)


def test_connack_properties_and_suback_reason_codes() -> None:
    props = b"\x21\x00\x14" + b"\x13\x00\x3c" + b"\x26\x00\x01k\x00\x01v" + b"\x1f\x00\x02ok"
    body = b"\x01\x00" + codec.varint(len(props)) + props
    assert codec.connack(body, v5=True) == codec.Connack(True, 0, 20, 60)
    assert codec.connack(b"\x00\x05", v5=False) == codec.Connack(False, 5)
    assert codec.suback(b"\x00\x07\x00\x01\x80", v5=True) == (7, [1, 0x80])
    assert codec.suback(b"\x00\x07\x00", v5=False) == (7, [0])
    assert codec.puback_reason(b"\x12\x34") == (0x1234, 0)
    assert codec.puback_reason(b"\x12\x34\x87\x00") == (0x1234, 0x87)
    assert codec.reason_name(0x87) == "Not authorized (0x87)"
    assert codec.reason_name(4, v5=False) == "bad user name or password (4)"


def test_connect_and_publish_packets() -> None:
    will = codec.WillSpec("t/w", b"gone", 1, True)
    p = codec.connect(
        "id",
        v5=True,
        clean_start=False,
        keepalive=30,
        session_expiry=600,
        receive_maximum=1000,
        will=will,
        username="u",
        password="p",
    )
    assert p == (
        b"\x10\x2e\x00\x04MQTT\x05\xec\x00\x1e"
        b"\x0d\x11\x00\x00\x02\x58\x21\x03\xe8\x27\x00\x10\x00\x00"
        b"\x00\x02id"
        b"\x00\x00\x03t/w\x00\x04gone"
        b"\x00\x01u\x00\x01p"
    )
    assert codec.publish("a/b", b"xy", 1, True, 9, v5=True) == b"\x33\x0a\x00\x03a/b\x00\x09\x00xy"
    assert codec.publish("a/b", b"xy", 0, False, 0, v5=False) == b"\x30\x07\x00\x03a/bxy"
    assert codec.subscribe("a/#", 1, 3, v5=False) == b"\x82\x08\x00\x03\x00\x03a/#\x01"
