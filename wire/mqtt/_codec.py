"""MQTT 5 and 3.1.1 packets: the subset telehub uses, encoded and decoded without I/O.

Client → server: CONNECT (clean start, session expiry, receive maximum, will, credentials),
PUBLISH (QoS 0/1), PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT. Server → client: CONNACK, PUBLISH
(QoS 0/1), PUBACK, SUBACK, PINGRESP, DISCONNECT (MQTT 5). Everything else is a protocol error
for telehub's purposes (QoS 2 is not used anywhere in telehub).

Reading PUBLISH packets is the hot path of the ingester; it is inlined in
:meth:`wire.mqtt._client._Protocol.data_received` and only the rarer packets come through here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from wire.mqtt._exceptions import ProtocolError

# Packet types (high nibble of the first byte).
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"  # MQTT 5: no reason code = 0x00 normal disconnection

# MQTT 5 property identifiers used here.
SESSION_EXPIRY: Final = 0x11
SERVER_KEEP_ALIVE: Final = 0x13
REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM: Final = 0x21
ASSIGNED_CLIENT_ID: Final = 0x12
MAXIMUM_QOS: Final = 0x24
RETAIN_AVAILABLE: Final = 0x25
MAXIMUM_PACKET_SIZE: Final = 0x27

#: Largest packet this client accepts unless told otherwise (and announces in MQTT 5 CONNECT).
DEFAULT_MAX_PACKET: Final = 1 << 20

#: MQTT 5 property id -> how its value is encoded (spec 2.2.2.2).
_PROPERTY_TYPES: Final = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "u32", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16",
    0x22: "u16", 0x23: "u16", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}  # fmt: skip

#: MQTT 5 reason codes (spec 2.4) and MQTT 3.1.1 CONNACK return codes, for messages.
REASONS_V5: Final = {
    0x00: "Success", 0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password",
    0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned",
    0x8B: "Server shutting down", 0x8D: "Keep Alive timeout", 0x8E: "Session taken over",
    0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid", 0x91: "Packet Identifier in use",
    0x93: "Receive Maximum exceeded", 0x95: "Packet too large", 0x97: "Quota exceeded",
    0x99: "Payload format invalid", 0x9A: "Retain not supported", 0x9B: "QoS not supported",
    0x9C: "Use another server", 0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported", 0x9F: "Connection rate exceeded",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}  # fmt: skip
RETURN_CODES_V3: Final = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def reason_name(code: int, v5: bool = True) -> str:
    if v5:
        return f"{REASONS_V5.get(code, 'Unknown reason')} (0x{code:02X})"
    return f"{RETURN_CODES_V3.get(code, 'unknown return code')} ({code})"


# -- encoding --------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def binary(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("binary field longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class WillSpec:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def connect(
    client_id: str,
    *,
    v5: bool,
    clean_start: bool,
    keepalive: int,
    session_expiry: int = 0,
    receive_maximum: int = 65535,
    will: WillSpec | None = None,
    username: str | None = None,
    password: str | None = None,
    maximum_packet_size: int = DEFAULT_MAX_PACKET,
) -> bytes:
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = utf8("MQTT") + bytes((5 if v5 else 4, flags)) + struct.pack("!H", keepalive)
    if v5:
        props = (
            bytes((SESSION_EXPIRY,))
            + struct.pack("!I", session_expiry)
            + bytes((RECEIVE_MAXIMUM,))
            + struct.pack("!H", receive_maximum)
            + bytes((MAXIMUM_PACKET_SIZE,))
            + struct.pack("!I", maximum_packet_size)
        )
        body += varint(len(props)) + props
    body += utf8(client_id)
    if will is not None:
        if v5:
            body += b"\x00"  # no will properties
        body += utf8(will.topic) + binary(will.payload)
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += binary(password.encode())
    return packet(CONNECT << 4, body)


def publish(
    topic: str, payload: bytes, qos: int, retain: bool, mid: int, *, v5: bool, dup: bool = False
) -> bytes:
    first = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    t = topic.encode()
    head = struct.pack("!H", len(t)) + t
    if qos:
        head += struct.pack("!H", mid)
    if v5:
        head += b"\x00"  # no properties
    return bytes((first,)) + varint(len(head) + len(payload)) + head + payload


def puback(mid: int) -> bytes:
    """PUBACK, success (MQTT 5 allows omitting a 0x00 reason code and empty properties)."""
    return b"\x40\x02" + struct.pack("!H", mid)


def subscribe(topic_filter: str, qos: int, mid: int, *, v5: bool) -> bytes:
    body = struct.pack("!H", mid) + (b"\x00" if v5 else b"") + utf8(topic_filter) + bytes((qos,))
    return packet((SUBSCRIBE << 4) | 0x02, body)


# -- decoding --------------------------------------------------------------------------------
def read_varint(buf: bytes, i: int) -> tuple[int, int] | None:
    """(value, index after it), or None if ``buf`` ends inside it; ProtocolError if > 4 bytes."""
    value = 0
    shift = 0
    for k in range(4):
        if i + k >= len(buf):
            return None
        b = buf[i + k]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + k + 1
        shift += 7
    raise ProtocolError("malformed variable byte integer")


def properties(buf: bytes, i: int) -> tuple[dict[int, object], int]:
    """MQTT 5 properties at ``buf[i]`` (length first): ({id: value}, index after them).

    Anything malformed (truncated, overrunning, bad UTF-8, unknown id) is a ProtocolError."""
    try:
        return _properties(buf, i)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed properties: {type(exc).__name__}") from None


def _properties(buf: bytes, i: int) -> tuple[dict[int, object], int]:
    got = read_varint(buf, i)
    if got is None:
        raise ProtocolError("truncated properties")
    length, i = got
    end = i + length
    if end > len(buf):
        raise ProtocolError("properties longer than the packet")
    out: dict[int, object] = {}
    while i < end:
        pid = buf[i]
        i += 1
        kind = _PROPERTY_TYPES.get(pid)
        value: object
        if kind == "byte":
            value, i = buf[i], i + 1
        elif kind == "u16":
            value, i = struct.unpack_from("!H", buf, i)[0], i + 2
        elif kind == "u32":
            value, i = struct.unpack_from("!I", buf, i)[0], i + 4
        elif kind == "varint":
            v = read_varint(buf, i)
            if v is None:
                raise ProtocolError("truncated property")
            value, i = v
        elif kind in ("str", "bin"):
            n = struct.unpack_from("!H", buf, i)[0]
            raw = buf[i + 2 : i + 2 + n]
            if len(raw) != n:
                raise ProtocolError("truncated property")
            value, i = (raw.decode() if kind == "str" else bytes(raw)), i + 2 + n
        elif kind == "pair":
            n = struct.unpack_from("!H", buf, i)[0]
            m = struct.unpack_from("!H", buf, i + 2 + n)[0]
            value, i = None, i + 4 + n + m  # user properties: not used
        else:
            raise ProtocolError(f"unknown property 0x{pid:02X}")
        out[pid] = value
    if i != end:
        raise ProtocolError("properties overrun their length")
    return out, end


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    code: int
    receive_maximum: int = 65535
    server_keepalive: int | None = None
    maximum_packet_size: int | None = None
    maximum_qos: int = 2
    retain_available: bool = True
    assigned_client_id: str | None = None


def connack(body: bytes, v5: bool) -> Connack:
    if len(body) < 2:
        raise ProtocolError("short CONNACK")
    present, code = bool(body[0] & 1), body[1]
    if not v5 or len(body) == 2:
        return Connack(present, code)
    props, _ = properties(body, 2)
    rm = props.get(RECEIVE_MAXIMUM)
    ka = props.get(SERVER_KEEP_ALIVE)
    mp = props.get(MAXIMUM_PACKET_SIZE)
    mq = props.get(MAXIMUM_QOS)
    ra = props.get(RETAIN_AVAILABLE)
    ac = props.get(ASSIGNED_CLIENT_ID)
    if rm == 0 or mp == 0 or (mq is not None and mq not in (0, 1)) or ra not in (None, 0, 1):
        raise ProtocolError("CONNACK property out of range")
    return Connack(
        present,
        code,
        rm if isinstance(rm, int) else 65535,
        ka if isinstance(ka, int) else None,
        mp if isinstance(mp, int) else None,
        mq if isinstance(mq, int) else 2,
        ra != 0,
        ac if isinstance(ac, str) else None,
    )


def puback_reason(body: bytes) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK (reason 0 when omitted)."""
    if len(body) < 2:
        raise ProtocolError("short PUBACK")
    mid = (body[0] << 8) | body[1]
    return mid, body[2] if len(body) > 2 else 0


def suback(body: bytes, v5: bool) -> tuple[int, list[int]]:
    if len(body) < 3:
        raise ProtocolError("short SUBACK")
    mid = (body[0] << 8) | body[1]
    i = properties(body, 2)[1] if v5 else 2
    return mid, list(body[i:])


def disconnect_reason(body: bytes) -> int:
    return body[0] if body else 0


# -- the packet reader (sans-I/O) ------------------------------------------------------------
class Reader:
    """Bytes in, packets out: ``feed(data)`` returns every packet completed by ``data``, each
    either ``make_publish(topic, payload, qos, retain, mid, dup)`` for a PUBLISH or
    ``(first_byte, body)`` for any other packet. A partial packet is kept as a list of chunks and
    joined once it is complete (no quadratic ``bytes + bytes``); a remaining length over
    ``max_packet`` is refused as soon as its header is read. A malformation raises ProtocolError
    (or, after packets that came before it in the same read, ends the returned list as the
    ProtocolError instance); the reader must not be fed again."""

    __slots__ = ("_chunks", "_have", "_need", "make", "max_packet", "v5")

    def __init__(
        self,
        *,
        v5: bool,
        max_packet: int,
        make_publish: Callable[[str, bytes, int, bool, int], object],
    ) -> None:
        self.v5 = v5
        self.max_packet = max_packet
        self.make = make_publish
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0

    def feed(self, data: bytes) -> list[object]:
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._chunks)
            self._chunks.clear()
        else:
            buf = data
        out: list[object] = []
        try:
            self._parse(buf, out)
        except (ProtocolError, UnicodeDecodeError, IndexError) as exc:
            err = (
                exc
                if isinstance(exc, ProtocolError)
                else ProtocolError(f"malformed packet: {type(exc).__name__}")
            )
            if not out:
                raise err from None
            out.append(err)  # the packets before it are valid: the caller handles them first
        return out

    def _parse(self, buf: bytes, out: list[object]) -> None:
        n = len(buf)
        i = 0
        v5 = self.v5
        make = self.make
        limit = self.max_packet
        need = 0
        while True:
            if n - i < 2:
                need = 2
                break
            first = buf[i]
            b = buf[i + 1]
            if b < 0x80:
                rl, j = b, i + 2
            elif n - i > 2 and buf[i + 2] < 0x80:  # 128 B .. 16 KiB: most PUBLISHes
                rl, j = (b & 0x7F) | (buf[i + 2] << 7), i + 3
            else:
                got = read_varint(buf, i + 1)
                if got is None:
                    need = n - i + 1
                    break
                rl, j = got
            end = j + rl
            if end - i > limit:
                raise ProtocolError(f"packet of {end - i} bytes over the maximum of {limit}")
            if end > n:
                need = end - i
                break
            if first >> 4 == PUBLISH:  # the hot path, inline
                qos = (first >> 1) & 3
                k = j + 2 + ((buf[j] << 8) | buf[j + 1])
                if k > end:
                    raise ProtocolError("malformed PUBLISH")
                topic = buf[j + 2 : k].decode()
                mid = 0
                if qos:
                    if qos == 3:
                        raise ProtocolError("PUBLISH with QoS 3")
                    mid = (buf[k] << 8) | buf[k + 1]
                    k += 2
                    if mid == 0:
                        raise ProtocolError("PUBLISH with packet identifier 0")
                if v5:
                    p = buf[k]
                    if p < 0x80:
                        k += 1 + p
                    else:
                        got = read_varint(buf, k)
                        if got is None:
                            raise ProtocolError("truncated PUBLISH properties")
                        k = got[0] + got[1]
                if k > end or not topic or "\x00" in topic:
                    raise ProtocolError("malformed PUBLISH")
                out.append(make(topic, buf[k:end], qos, bool(first & 1), mid))
            else:
                out.append((first, buf[j:end]))
            i = end
        if i < n:
            self._chunks.append(buf[i:])
            self._have = n - i
            self._need = need
