"""Fast MQTT publishers for the benchmark, each in a process of its own.

A publisher is a minimal MQTT 3.1.1 client on a plain socket: CONNECT, then pre-built QoS 1
PUBLISH packets written in bulk with up to ``window`` messages awaiting their PUBACK (read by a
thread). Building the packets happens before the clock starts, so sending costs little more than
``sendall``: this is what keeps the publishers from being the limit of what is measured
(``publisher_only`` measures them against the broker alone, with nobody subscribed).

Paced mode (``rate``): message *i* is written at ``start + i / rate``; the monotonic time of each
write is returned for the latency runs (CLOCK_MONOTONIC is the same clock in every process).

Messages are assigned to publishers by hub, so each hub's messages leave in order.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.generate import Message

_CONNACK = b"\x20\x02\x00\x00"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _utf8(client_id)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, mid: int, payload: bytes) -> bytes:
    """A QoS 1 PUBLISH (packet ids must be 1..65535)."""
    body = _utf8(topic) + struct.pack("!H", mid) + payload
    return b"\x32" + _varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class PublisherResult:
    name: str
    messages: int
    readings: int
    t_start: float  # monotonic, first write
    t_sent: float  # last write
    t_acked: float  # last PUBACK
    send_times: tuple[float, ...] = ()  # paced mode: monotonic time of each write


class _Acks(threading.Thread):
    """Counts PUBACKs on the socket (any other packet is skipped)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True, name="pubacks")
        self.sock = sock
        self.acked = 0
        self.last = 0.0
        self.more = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return
                buf += data
                i, n = 0, len(buf)
                while i + 2 <= n:
                    rl, mult, j = 0, 1, i + 1
                    while j < n:
                        b = buf[j]
                        rl += (b & 0x7F) * mult
                        mult *= 128
                        j += 1
                        if not b & 0x80:
                            break
                    else:
                        break
                    if j + rl > n:
                        break
                    if buf[i] & 0xF0 == 0x40:
                        self.acked += 1
                    i = j + rl
                buf = buf[i:]
                self.last = time.monotonic()
                self.more.set()
        except OSError as exc:
            self.error = exc


def _open(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    got = b""
    while len(got) < 4:
        chunk = sock.recv(4 - len(got))
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        got += chunk
    if got != _CONNACK:
        raise ConnectionError(f"connection refused: {got!r}")
    sock.settimeout(None)
    return sock


def _publish(
    port: int,
    name: str,
    msgs: Sequence[Message],
    window: int,
    rate: float | None,
    ready: Connection,
    go: Any,
) -> PublisherResult:
    sock = _open(port, name)
    packets = [publish_packet(m.topic, i % 65535 + 1, m.payload) for i, m in enumerate(msgs)]
    readings = sum(m.readings for m in msgs)
    acks = _Acks(sock)
    acks.start()
    ready.send("ready")
    go.wait()
    total = len(packets)
    sent = 0
    times: list[float] = []
    t_start = time.monotonic()
    if rate is None:
        while sent < total:
            room = window - (sent - acks.acked)
            if room <= 0:
                acks.more.clear()
                if window - (sent - acks.acked) <= 0:
                    acks.more.wait(1.0)
                continue
            k = min(room, 64, total - sent)
            sock.sendall(b"".join(packets[sent : sent + k]))
            sent += k
    else:
        interval = 1.0 / rate
        while sent < total:
            due = t_start + sent * interval
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
                now = time.monotonic()
            sock.sendall(packets[sent])
            times.append(now)
            sent += 1
    t_sent = time.monotonic()
    deadline = t_sent + 120
    while acks.acked < total and time.monotonic() < deadline:
        if acks.error is not None or not acks.is_alive():
            break
        acks.more.clear()
        if acks.acked < total:
            acks.more.wait(0.5)
    if acks.acked < total:
        raise ConnectionError(f"{name}: {acks.acked}/{total} PUBACKs ({acks.error!r})")
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return PublisherResult(name, total, readings, t_start, t_sent, acks.last, tuple(times))


def _child(
    port: int,
    name: str,
    msgs: Sequence[Message],
    window: int,
    rate: float | None,
    conn: Connection,
    go: Any,
) -> None:
    try:
        conn.send(_publish(port, name, msgs, window, rate, conn, go))
    except (OSError, ConnectionError) as exc:
        conn.send(f"error: {exc}")
    finally:
        conn.close()


def split_by_hub(msgs: Sequence[Message], n: int) -> list[list[Message]]:
    """Messages per publisher: every message of one hub goes to the same publisher, in order."""
    out: list[list[Message]] = [[] for _ in range(n)]
    for m in msgs:
        out[zlib.crc32(m.topic.encode()) % n].append(m)
    return out


def publish(
    port: int,
    msgs: Sequence[Message],
    *,
    processes: int = 2,
    window: int = 1000,
    rate: float | None = None,
    name: str = "bench-pub",
    on_go: Any = None,
) -> list[PublisherResult]:
    """Publish ``msgs`` from ``processes`` publisher processes; returns when all are acked.

    ``rate`` (messages/s, over all publishers) paces the publishers. ``on_go`` is called just
    before the publishers are released (to note the start time)."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    parts = split_by_hub(msgs, processes)
    per_rate = None if rate is None else rate / processes
    procs: list[tuple[Any, Connection]] = []
    for i, part in enumerate(parts):
        if not part:
            continue
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_child,
            args=(port, f"{name}-{i}", part, window, per_rate, child, go),
            daemon=True,
        )
        p.start()
        child.close()
        procs.append((p, parent))
    try:
        for _, conn in procs:
            if not conn.poll(60):
                raise ConnectionError("a publisher did not get ready")
            msg = conn.recv()
            if msg != "ready":
                raise ConnectionError(str(msg))
        if on_go is not None:
            on_go()
        go.set()
        results: list[PublisherResult] = []
        for _, conn in procs:
            if not conn.poll(600):
                raise ConnectionError("a publisher did not finish")
            res = conn.recv()
            if not isinstance(res, PublisherResult):
                raise ConnectionError(str(res))
            results.append(res)
        return results
    finally:
        for p, _ in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def interleave_send_times(
    msgs: Sequence[Message], processes: int, results: Sequence[PublisherResult]
) -> dict[str, float]:
    """msg_id -> monotonic publish time, from the paced publishers' ``send_times``."""
    parts = [p for p in split_by_hub(msgs, processes) if p]
    out: dict[str, float] = {}
    for part, res in zip(parts, results, strict=True):
        for m, t in zip(part, res.send_times, strict=True):
            out[m.msg_id] = t
    return out
