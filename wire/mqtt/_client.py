"""A small asyncio MQTT client (MQTT 5 or 3.1.1), with acknowledgement under our control.

The ingester must send PUBACK only after its database commit. aiomqtt 2.x acknowledges every QoS 1
message on receipt (empicano/aiomqtt#345); paho-mqtt 2.x has ``manual_ack`` and this module
wrapped it until the ingest benchmark (docs/performance.md) showed paho to be the ingester's
first limit: receiving and acknowledging alone stopped at about 16,000 messages/s on this 2-core
machine (paho reads a packet with several ``recv`` calls, builds a Properties object per MQTT 5
packet and, with an in-flight limit set, scans all its outgoing messages on every PUBACK). So the
protocol is spoken here directly, as an :class:`asyncio.Protocol`: every packet already received is
parsed in one pass over the bytes, and outgoing packets written during one event-loop iteration
(PUBACKs of a batch, its receipts) leave in one ``write``. The packets are in
:mod:`wire.mqtt._codec` (the sans-I/O :class:`~wire.mqtt._codec.Reader`).

What the client does: CONNECT with clean start / session expiry (MQTT 5) or clean session
(3.1.1), credentials, TLS, a last will; QoS 0 and 1 both ways (QoS 2 is refused: telehub never
uses it); ``publish()`` awaits the PUBACK, ``publish_nowait()`` returns a future; at most
``max_inflight`` (and never more than the broker's Receive Maximum) unacknowledged PUBLISHes, the
rest wait in order; ``subscribe()`` awaits the SUBACK; inbound messages in a bounded queue
(``messages()``, ``get_nowait()``), acknowledged by ``ack()`` when ``manual_ack`` (else on
receipt); keep-alive pings. Every await has a timeout; a lost connection surfaces as
:class:`MqttError`. Reconnecting is the caller's loop (so that it can decide what to replay).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import msgspec

from wire.mqtt import _codec as codec
from wire.mqtt._exceptions import (
    ConnectionLost,
    ConnectRefused,
    MqttError,
    MqttTimeout,
    ProtocolError,
    PublishRefused,
)

log = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]
#: Outgoing packets are joined into one write per event-loop turn, or sooner once this many bytes
#: wait: a writer that never yields (QoS 0 in a loop) then meets the transport's high-water mark
#: (``pause_writing``, so ``drain()`` waits) instead of an unbounded list.
COALESCE_BYTES: Final = 64 * 1024


class Message(msgspec.Struct, frozen=True, gc=False):
    """An inbound PUBLISH (a frozen Struct: one is made per message on the ingester's hot path,
    0.1 µs against 0.6 µs for a frozen dataclass)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    user: str | None = None  # not provided by MQTT; kept for symmetry with broker-side tools


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    #: the client's own certificate chain and private key (PEM) for mutual TLS: a hub's
    #: identity at the broker (docs/security.md); both or neither
    cert_file: str | None = None
    key_file: str | None = None
    protocol: Protocol = "5"
    keepalive: int = 30
    connect_timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> MqttSettings:
        """``mqtt://user:pass@host:port`` or ``mqtts://...`` (TLS)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(
                f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)"
            )
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            **kw,
        )


class _Protocol(asyncio.Protocol):
    """Bytes in, packets to the client; the client's packets out, coalesced per loop turn."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.reader = codec.Reader(
            v5=client._v5, max_packet=client.max_packet_size, make_publish=Message
        )
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not subclasses of asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= COALESCE_BYTES:
            # a writer that never yields (QoS 0 in a loop) must not grow this list without
            # bound: hand it to the transport now, whose high-water mark pauses the writer
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            data = b"".join(self._out)
            self._out.clear()
            self._out_bytes = 0
            self.transport.write(data)
            self.client._last_out = time.monotonic()

    def data_received(self, data: bytes) -> None:
        c = self.client
        c._last_in = time.monotonic()
        try:
            packets = self.reader.feed(data)
            for p in packets:
                if type(p) is Message:
                    c._inbound(p)
                elif isinstance(p, ProtocolError):
                    raise p
                else:
                    first, body = cast(tuple[int, bytes], p)
                    if first == 0x40 and len(body) >= 2:  # PUBACK: the ingester's receipts
                        c._puback((body[0] << 8) | body[1], body[2] if len(body) > 2 else 0)
                    else:
                        c._control(first, body)
        except ProtocolError as exc:
            c._protocol_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client._lost(exc)

    def pause_writing(self) -> None:  # asyncio's buffer is over its high-water mark
        self.client._write_paused()

    def resume_writing(self) -> None:
        self.client._write_resumed()


class MqttClient:
    """One MQTT connection. Use ``async with MqttClient(...) as c:``; reconnecting is the caller's
    loop (so that it can decide what to replay)."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry: int = 0,
        manual_ack: bool = False,
        will: Will | None = None,
        receive_maximum: int = 100,
        max_inflight: int = 100,
        queue_size: int | None = None,
        max_packet_size: int = codec.DEFAULT_MAX_PACKET,
        resend_unacked: bool = False,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._manual_ack = manual_ack
        self._will = will
        self._receive_maximum = receive_maximum
        self._max_inflight = max(1, max_inflight)
        self._window = self._max_inflight
        self._v5 = settings.protocol == "5"
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[None] | None = None
        self._closing = False
        self._pending_pub: dict[int, asyncio.Future[None] | _Group] = {}
        self._pending_sub: dict[int, asyncio.Future[list[int]]] = {}
        self._backlog: collections.deque[tuple[int, bytes]] = collections.deque()
        self._next_mid = 0
        self._last_out = 0.0
        self._last_in = 0.0
        self.max_packet_size = max_packet_size
        # With a persistent session (clean_start=False) and ``resend_unacked``, QoS 1 PUBLISHes
        # still unacknowledged when the connection is lost stay pending; ``connect()`` again on
        # the same client re-sends them with DUP=1 if the broker resumed the session (MQTT 5
        # 4.4, 3.1.1 4.4: a MUST), or fails them if it did not.
        self._resend = resend_unacked and not clean_start
        self._sent: dict[int, bytes] = {}
        self._broker_max_packet: int | None = None
        self._max_qos = 1
        self._retain_available = True
        self._drain: asyncio.Future[None] | None = None
        self._ping_sent: float | None = None
        self._keepalive = settings.keepalive
        # Inbound messages. Bounded by back-pressure: when the queue holds ``_limit`` messages the
        # socket is no longer read (TCP flow control reaches the broker) until the consumer has
        # drained half. Except while a PUBACK or SUBACK is awaited: it may be behind PUBLISHes
        # already on the wire, so the socket is read until it arrives (else publish() and
        # subscribe() could never complete while the consumer waits for them: a deadlock). The
        # queue may then exceed the limit by what the broker had sent: at most its Receive
        # Maximum from a broker that honours it (Mosquitto 2.0.11 does not: each in-order PUBACK
        # releases another window).
        self._queue: collections.deque[Message] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._limit = queue_size or max(2 * receive_maximum, 64)
        self._paused = False
        self._misc_task: asyncio.Task[None] | None = None
        self.session_present = False

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> MqttClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connected = loop.create_future()
        self._disconnected = loop.create_future()
        self._closing = False
        self._paused = False
        self._ping_sent = None
        s = self.settings
        ctx: ssl.SSLContext | None = None
        if s.tls:
            ctx = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file is not None:
                ctx.load_cert_chain(s.cert_file, s.key_file)
        will = None
        if self._will is not None:
            w = self._will
            will = codec.WillSpec(w.topic, w.payload, w.qos, w.retain)
        try:
            async with asyncio.timeout(s.connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: _Protocol(self),
                    s.host,
                    s.port,
                    ssl=ctx,
                    server_hostname=s.host if ctx is not None else None,
                )
                self._proto = proto
                proto.send(
                    codec.connect(
                        self.client_id,
                        v5=self._v5,
                        clean_start=self._clean_start,
                        keepalive=s.keepalive,
                        session_expiry=self._session_expiry,
                        receive_maximum=self._receive_maximum,
                        will=will,
                        username=s.username,
                        password=s.password,
                        maximum_packet_size=self.max_packet_size,
                    )
                )
                await asyncio.shield(self._connected)
        except (OSError, TimeoutError) as exc:
            self._teardown()
            msg = f"cannot connect to {s.host}:{s.port}: {exc or 'timeout'}"
            if isinstance(exc, TimeoutError):
                raise MqttTimeout(msg) from exc
            raise ConnectionLost(msg) from exc
        except MqttError:
            self._teardown()
            raise
        self._misc_task = loop.create_task(self._misc_loop())

    def _teardown(self) -> None:
        self._closing = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()

    async def disconnect(self, timeout: float = 5.0) -> None:
        if self._disconnected is None:
            return
        if not self._disconnected.done() and self._proto is not None:
            self._closing = True
            self._proto.send(codec.DISCONNECT_PACKET)
            self._proto.flush()
            if self._proto.transport is not None:
                self._proto.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._disconnected), timeout)
            if not self._disconnected.done() and self._proto.transport is not None:
                self._proto.transport.abort()
        self._fail_pending(ConnectionLost("disconnected"))
        if self._misc_task is not None:
            self._misc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc_task

    @property
    def is_connected(self) -> bool:
        return (
            self._connected is not None
            and self._connected.done()
            and not self._connected.cancelled()
            and self._connected.exception() is None
            and self._disconnected is not None
            and not self._disconnected.done()
        )

    async def wait_disconnected(self) -> None:
        """Returns (or raises MqttError) when the connection ends."""
        assert self._disconnected is not None
        await asyncio.shield(self._disconnected)

    # -- operations -------------------------------------------------------------------------------
    def _mid(self) -> int:
        for _ in range(65535):
            self._next_mid = self._next_mid % 65535 + 1
            if self._next_mid not in self._pending_pub and self._next_mid not in self._pending_sub:
                return self._next_mid
        raise PublishRefused("no free packet identifier")

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a PUBLISH; the future resolves on PUBACK (QoS 1) or when sent (QoS 0)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if qos not in (0, 1):
            fut.set_exception(PublishRefused(f"QoS {qos} is not supported (telehub uses 0 and 1)"))
            return fut
        if not self.is_connected or self._proto is None:
            fut.set_exception(ConnectionLost("not connected"))
            return fut
        try:
            self._check_publish(topic, qos, retain)
            packet = codec.publish(topic, payload, qos, retain, 0, v5=self._v5)
            self._check_size(packet)
        except PublishRefused as exc:
            fut.set_exception(exc)
            return fut
        if qos == 0:
            self._proto.send(packet)
            fut.set_result(None)
            return fut
        mid = self._mid()
        self._pending_pub[mid] = fut
        self._enqueue(mid, codec.publish(topic, payload, 1, retain, mid, v5=self._v5))
        self._resume_reading()  # the PUBACK must be read (see _queue)
        return fut

    def publish_many(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        """Queue QoS 1 PUBLISHes of (topic, payload); one future for all their PUBACKs (it fails
        with the first refusal). Cheaper than a future per message for a batch of receipts."""
        assert self._loop is not None
        group = _Group(self._loop.create_future(), len(items))
        if not self.is_connected or self._proto is None:
            _set_exc(group.fut, ConnectionLost("not connected"))
            return group.fut
        if not items:
            group.fut.set_result(None)
            return group.fut
        v5 = self._v5
        try:
            packets = []
            for topic, payload in items:
                self._check_publish(topic, 1, False)
                packet = codec.publish(topic, payload, 1, False, 0, v5=v5)
                self._check_size(packet)
                packets.append((topic, payload))
        except PublishRefused as exc:
            _set_exc(group.fut, exc)
            return group.fut
        for topic, payload in packets:
            mid = self._mid()
            self._pending_pub[mid] = group
            self._enqueue(mid, codec.publish(topic, payload, 1, False, mid, v5=v5))
        self._resume_reading()  # the PUBACKs must be read (see _queue)
        return group.fut

    def _check_publish(self, topic: str, qos: int, retain: bool) -> None:
        """A topic name we may send (spec 4.7: no wildcards, no NUL, UTF-8, at most 65,535
        bytes, not empty) and a QoS and retain flag the broker said it supports."""
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            raise PublishRefused(f"invalid topic name {topic!r}")
        try:
            n = len(topic.encode())
        except UnicodeEncodeError:
            raise PublishRefused("topic name is not valid UTF-8") from None
        if n > 0xFFFF:
            raise PublishRefused("topic name longer than 65535 bytes")
        if qos > self._max_qos:
            raise PublishRefused(f"QoS {qos} over the broker's Maximum QoS {self._max_qos}")
        if retain and not self._retain_available:
            raise PublishRefused("the broker does not support retained messages")

    def _check_size(self, packet: bytes) -> None:
        limit = self._broker_max_packet
        if limit is not None and len(packet) > limit:
            raise PublishRefused(
                f"PUBLISH of {len(packet)} bytes over the broker's Maximum Packet Size {limit}"
            )

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the transport's write buffer is below its high-water mark (back-pressure:
        asyncio called ``pause_writing``); ConnectionLost if the connection ends meanwhile."""
        d = self._drain
        if d is None or d.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(d), timeout)
        except TimeoutError as exc:
            raise MqttTimeout(f"write buffer not drained within {timeout}s") from exc

    def _write_paused(self) -> None:
        if self._loop is not None and (self._drain is None or self._drain.done()):
            self._drain = self._loop.create_future()

    def _write_resumed(self) -> None:
        if self._drain is not None:
            _set_result(self._drain)

    def _enqueue(self, mid: int, packet: bytes) -> None:
        assert self._proto is not None
        if len(self._pending_pub) - len(self._backlog) > self._window or self._backlog:
            self._backlog.append((mid, packet))  # over the in-flight window: in order, later
        else:
            self._proto.send(packet)
            if self._resend:
                self._sent[mid] = packet

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        await self.drain(timeout)
        fut = self.publish_nowait(topic, payload, qos, retain)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise MqttTimeout(f"no PUBACK within {timeout}s") from exc

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> None:
        assert self._loop is not None
        if qos not in (0, 1):
            raise PublishRefused(f"QoS {qos} is not supported (telehub uses 0 and 1)")
        if not self.is_connected or self._proto is None:
            raise ConnectionLost("subscribe failed: not connected")
        mid = self._mid()
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        self._pending_sub[mid] = fut
        self._proto.send(codec.subscribe(topic_filter, qos, mid, v5=self._v5))
        self._resume_reading()  # the SUBACK must be read (see _queue)
        try:
            codes = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise MqttTimeout(f"no SUBACK within {timeout}s") from exc
        if len(codes) != 1:
            raise ProtocolError(f"SUBACK with {len(codes)} codes for one topic filter")
        if codes[0] >= 0x80:
            raise PublishRefused(
                f"subscription to {topic_filter!r} refused (reason {codes})", codes[0]
            )
        if codes[0] < qos:
            # ack-after-commit needs QoS 1: a QoS 0 grant would silently drop redelivery
            raise PublishRefused(
                f"subscription to {topic_filter!r} granted QoS {codes[0]}, not {qos}", codes[0]
            )
        if codes[0] > qos:
            raise ProtocolError(f"SUBACK granted QoS {codes[0]} over the {qos} requested")

    def ack(self, message: Message) -> None:
        """Send the PUBACK for a message received with ``manual_ack=True``."""
        if message.qos > 0 and self._manual_ack and self._proto is not None:
            self._proto.send(codec.puback(message.mid))

    async def messages(self) -> AsyncIterator[Message]:
        """Inbound messages until the connection ends (then MqttError)."""
        assert self._disconnected is not None and self._loop is not None
        while True:
            if self._queue:
                msg = self._queue.popleft()
                self._maybe_resume()
                yield msg
                continue
            if self._disconnected.done():
                self._disconnected.result()
                raise ConnectionLost("connection closed")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiter = waiter
            try:
                await asyncio.wait(
                    {waiter, self._disconnected}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def get_nowait(self) -> Message | None:
        """The next already-received message, if any (for draining into a batch)."""
        if not self._queue:
            return None
        msg = self._queue.popleft()
        self._maybe_resume()
        return msg

    # -- flow control -----------------------------------------------------------------------------
    def _maybe_resume(self) -> None:
        if self._paused and len(self._queue) <= self._limit // 2:
            self._resume_reading()

    def _pause_reading(self) -> None:
        """Stop reading the socket (back-pressure), unless an acknowledgement is awaited."""
        if (
            self._paused
            or self._pending_pub
            or self._pending_sub
            or self._ping_sent is not None
            or self._proto is None
        ):
            return
        if self._proto.transport is not None:
            self._proto.transport.pause_reading()
            self._paused = True

    def _resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.resume_reading()

    # -- packets from the broker ------------------------------------------------------------------
    def _inbound(self, msg: Message) -> None:
        if msg.qos > 1:
            # we subscribe at QoS <= 1: a QoS 2 PUBLISH exceeds every grant (spec 3.8.4)
            raise ProtocolError("QoS 2 PUBLISH above the granted QoS")
        self._queue.append(msg)
        if msg.qos and not self._manual_ack and self._proto is not None:
            self._proto.send(codec.puback(msg.mid))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if len(self._queue) >= self._limit:
            self._pause_reading()

    def _control(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == codec.PUBACK:
            self._puback(*codec.puback_reason(body))
        elif kind == codec.SUBACK:
            mid, codes = codec.suback(body, self._v5)
            sfut = self._pending_sub.pop(mid, None)
            if sfut is not None and not sfut.done():
                sfut.set_result(codes)
            self._settled_ack()
        elif kind == codec.PINGRESP:
            self._ping_sent = None
            self._settled_ack()
        elif kind == codec.CONNACK:
            self._on_connack(codec.connack(body, self._v5))
        elif kind == codec.DISCONNECT:
            reason = codec.disconnect_reason(body)
            self._fail(
                ConnectionLost(
                    f"connection lost: broker sent DISCONNECT {codec.reason_name(reason)}"
                )
            )
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _puback(self, mid: int, reason: int) -> None:
        fut = self._pending_pub.pop(mid, None)
        if fut is None:
            return
        if self._resend:
            self._sent.pop(mid, None)
        err = (
            None
            if reason < 0x80
            else PublishRefused(f"publish refused by broker: {codec.reason_name(reason)}", reason)
        )
        if isinstance(fut, _Group):
            fut.settle(err)
        elif err is not None:
            _set_exc(fut, err)
        else:
            _set_result(fut)
        if self._backlog:
            self._send_backlog()
        if len(self._queue) >= self._limit:
            self._settled_ack()

    def _on_connack(self, ack: codec.Connack) -> None:
        assert self._connected is not None
        if ack.code != 0:
            _set_exc(
                self._connected,
                ConnectRefused(
                    f"connection refused: {codec.reason_name(ack.code, self._v5)}", ack.code
                ),
            )
            self._teardown()
            return
        self.session_present = ack.session_present
        self._window = max(1, min(self._max_inflight, ack.receive_maximum))
        if ack.server_keepalive is not None:
            self._keepalive = ack.server_keepalive
        self._broker_max_packet = ack.maximum_packet_size
        self._max_qos = min(1, ack.maximum_qos)
        self._retain_available = ack.retain_available
        if ack.assigned_client_id is not None:
            self.client_id = ack.assigned_client_id
        if self._resend and self._pending_pub:
            if not ack.session_present:
                self._fail_pending(ConnectionLost("session not resumed: publishes not resent"))
            elif self._proto is not None:
                for packet in self._sent.values():  # in the order first sent
                    self._proto.send(bytes((packet[0] | 0x08,)) + packet[1:])
                self._send_backlog()
        _set_result(self._connected)

    def _send_backlog(self) -> None:
        proto = self._proto
        while self._backlog and proto is not None:
            in_flight = len(self._pending_pub) - len(self._backlog)
            if in_flight >= self._window:
                return
            mid, packet = self._backlog.popleft()
            if mid in self._pending_pub:
                proto.send(packet)
                if self._resend:
                    self._sent[mid] = packet

    def _settled_ack(self) -> None:
        """An awaited acknowledgement arrived: re-apply back-pressure if it is due."""
        if len(self._queue) >= self._limit:
            self._pause_reading()

    # -- the end ----------------------------------------------------------------------------------
    def _protocol_error(self, exc: ProtocolError) -> None:
        log.warning("mqtt: malformed packet from the broker: %s", exc)
        self._fail(exc)

    def _fail(self, err: MqttError) -> None:
        """End the connection with ``err`` (the transport is aborted)."""
        if self._disconnected is not None:
            _set_exc(self._disconnected, err)
        if self._connected is not None:
            _set_exc(self._connected, err)
        self._fail_pending(
            ConnectionLost(f"connection lost before acknowledgement: {err}"), keep_publishes=True
        )
        self._teardown()

    def _lost(self, exc: Exception | None) -> None:
        if self._disconnected is not None:
            if self._closing and exc is None:
                _set_result(self._disconnected)
            else:
                err = ConnectionLost(f"connection lost: {exc!r}" if exc else "connection lost")
                _set_exc(self._disconnected, err)
                if self._connected is not None:
                    _set_exc(self._connected, err)
        self._fail_pending(
            ConnectionLost("connection lost before acknowledgement"), keep_publishes=True
        )
        if self._drain is not None:  # a writer waiting for the buffer to drain: it never will
            _set_exc(self._drain, ConnectionLost("connection lost while the write buffer was full"))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self._misc_task is not None:
            self._misc_task.cancel()

    def _fail_pending(self, err: MqttError, *, keep_publishes: bool = False) -> None:
        for sfut in self._pending_sub.values():
            _set_exc(sfut, err)
        self._pending_sub.clear()
        if keep_publishes and self._resend:
            return  # re-sent with DUP on the next connect() if the session is resumed
        self._sent.clear()
        for fut in self._pending_pub.values():
            _set_exc(fut.fut if isinstance(fut, _Group) else fut, err)
        for sfut in self._pending_sub.values():
            _set_exc(sfut, err)
        self._pending_pub.clear()
        self._pending_sub.clear()
        self._backlog.clear()

    async def _misc_loop(self) -> None:
        # Keep-alive: a PINGREQ after ``keepalive`` seconds without sending OR without receiving
        # (a stopped broker is found while we publish); no PINGRESP within half a keep-alive
        # more ends the link (so a dead broker is found within ~1.5 x keepalive). While a PINGREQ
        # is outstanding the socket is read even if the inbound queue is full, so a slow consumer
        # cannot time out a healthy broker. A timer is the point here.
        tick = min(1.0, max(0.05, self._keepalive / 10)) if self._keepalive > 0 else 1.0
        while self._proto is not None and self._disconnected is not None:
            await asyncio.sleep(tick)
            if self._disconnected.done() or self._keepalive <= 0:
                continue
            now = time.monotonic()
            if self._ping_sent is not None:
                if now - self._ping_sent > self._keepalive / 2:
                    self._fail(MqttTimeout("connection lost: keep-alive timeout (no PINGRESP)"))
                    return
                continue
            if now - self._last_out >= self._keepalive or now - self._last_in >= self._keepalive:
                self._ping_sent = now
                self._proto.send(codec.PINGREQ_PACKET)
                self._resume_reading()  # the PINGRESP must be read (see _queue)


class _Group:
    """The PUBLISHes of one :meth:`MqttClient.publish_many`: a countdown to one future."""

    __slots__ = ("fut", "left")

    def __init__(self, fut: asyncio.Future[None], n: int) -> None:
        self.fut = fut
        self.left = n

    def settle(self, err: MqttError | None) -> None:
        if err is not None:
            _set_exc(self.fut, err)
            return
        self.left -= 1
        if self.left <= 0:
            _set_result(self.fut)


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        # Mark retrieved: a lost connection nobody awaited is not an "unhandled" error.
        fut.exception()
