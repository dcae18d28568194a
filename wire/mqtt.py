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
:mod:`wire.mqtt_codec`.

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
from typing import Any, Literal, cast

import msgspec

from wire import mqtt_codec as codec

log = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]


class MqttError(Exception):
    """The connection failed, was refused, or was lost; or an operation timed out."""


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
        self._buf = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not subclasses of asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            data = b"".join(self._out)
            self._out.clear()
            self.transport.write(data)
            self.client._last_out = time.monotonic()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        i = 0
        c = self.client
        v5 = c._v5
        try:
            while n - i >= 2:
                first = buf[i]
                b = buf[i + 1]
                if b < 0x80:
                    rl, j = b, i + 2
                elif n - i > 2 and buf[i + 2] < 0x80:  # 128 B .. 16 KiB: most PUBLISHes
                    rl, j = (b & 0x7F) | (buf[i + 2] << 7), i + 3
                else:
                    got = codec.read_varint(buf, i + 1)
                    if got is None:
                        break
                    rl, j = got
                end = j + rl
                if end > n:
                    break
                if first >> 4 == codec.PUBLISH:  # the hot path, inline
                    qos = (first >> 1) & 3
                    k = j + 2 + ((buf[j] << 8) | buf[j + 1])
                    topic = buf[j + 2 : k].decode()
                    mid = 0
                    if qos:
                        mid = (buf[k] << 8) | buf[k + 1]
                        k += 2
                    if v5:
                        p = buf[k]
                        if p < 0x80:
                            k += 1 + p
                        else:
                            got = codec.read_varint(buf, k)
                            if got is None:
                                raise codec.ProtocolError("truncated PUBLISH properties")
                            k = got[0] + got[1]
                    if k > end or qos == 3:
                        raise codec.ProtocolError("malformed PUBLISH")
                    c._inbound(Message(topic, buf[k:end], qos, bool(first & 1), mid))
                elif first == 0x40 and rl >= 2:  # PUBACK: as many as the ingester's receipts
                    c._puback((buf[j] << 8) | buf[j + 1], buf[j + 2] if rl > 2 else 0)
                else:
                    c._control(first, buf[j:end])
                i = end
        except (codec.ProtocolError, UnicodeDecodeError, IndexError) as exc:
            c._protocol_error(f"malformed packet from the broker: {exc!r}")
            return
        self._buf = buf[i:] if i < n else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client._lost(exc)

    def pause_writing(self) -> None:  # the kernel buffer is full: asyncio buffers for us
        pass

    def resume_writing(self) -> None:
        pass


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
        s = self.settings
        ctx: ssl.SSLContext | None = None
        if s.tls:
            ctx = ssl.create_default_context(cafile=s.ca_file)
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
                    )
                )
                await asyncio.shield(self._connected)
        except (OSError, TimeoutError) as exc:
            self._teardown()
            raise MqttError(f"cannot connect to {s.host}:{s.port}: {exc or 'timeout'}") from exc
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
        self._fail_pending(MqttError("disconnected"))
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
        raise MqttError("no free packet identifier")

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a PUBLISH; the future resolves on PUBACK (QoS 1) or when sent (QoS 0)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if qos not in (0, 1):
            fut.set_exception(MqttError(f"QoS {qos} is not supported (telehub uses 0 and 1)"))
            return fut
        if not self.is_connected or self._proto is None:
            fut.set_exception(MqttError("not connected"))
            return fut
        if qos == 0:
            self._proto.send(codec.publish(topic, payload, 0, retain, 0, v5=self._v5))
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
            _set_exc(group.fut, MqttError("not connected"))
            return group.fut
        if not items:
            group.fut.set_result(None)
            return group.fut
        v5 = self._v5
        for topic, payload in items:
            mid = self._mid()
            self._pending_pub[mid] = group
            self._enqueue(mid, codec.publish(topic, payload, 1, False, mid, v5=v5))
        self._resume_reading()  # the PUBACKs must be read (see _queue)
        return group.fut

    def _enqueue(self, mid: int, packet: bytes) -> None:
        assert self._proto is not None
        if len(self._pending_pub) - len(self._backlog) > self._window or self._backlog:
            self._backlog.append((mid, packet))  # over the in-flight window: in order, later
        else:
            self._proto.send(packet)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        fut = self.publish_nowait(topic, payload, qos, retain)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise MqttError(f"no PUBACK within {timeout}s") from exc

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> None:
        assert self._loop is not None
        if qos not in (0, 1):
            raise MqttError(f"QoS {qos} is not supported (telehub uses 0 and 1)")
        if not self.is_connected or self._proto is None:
            raise MqttError("subscribe failed: not connected")
        mid = self._mid()
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        self._pending_sub[mid] = fut
        self._proto.send(codec.subscribe(topic_filter, qos, mid, v5=self._v5))
        self._resume_reading()  # the SUBACK must be read (see _queue)
        try:
            codes = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise MqttError(f"no SUBACK within {timeout}s") from exc
        if any(c >= 0x80 for c in codes):
            raise MqttError(f"subscription to {topic_filter!r} refused (reason {codes})")

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
                raise MqttError("connection closed")
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
        if self._paused or self._pending_pub or self._pending_sub or self._proto is None:
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
        elif kind == codec.CONNACK:
            self._on_connack(codec.connack(body, self._v5))
        elif kind == codec.DISCONNECT:
            reason = codec.disconnect_reason(body)
            self._fail(
                MqttError(f"connection lost: broker sent DISCONNECT {codec.reason_name(reason)}")
            )
        else:
            raise codec.ProtocolError(f"unexpected packet type {kind}")

    def _puback(self, mid: int, reason: int) -> None:
        fut = self._pending_pub.pop(mid, None)
        if fut is None:
            return
        err = (
            None
            if reason < 0x80
            else MqttError(f"publish refused by broker: {codec.reason_name(reason)}")
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
                MqttError(f"connection refused: {codec.reason_name(ack.code, self._v5)}"),
            )
            self._teardown()
            return
        self.session_present = ack.session_present
        self._window = max(1, min(self._max_inflight, ack.receive_maximum))
        if ack.server_keepalive is not None:
            self._keepalive = ack.server_keepalive
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

    def _settled_ack(self) -> None:
        """An awaited acknowledgement arrived: re-apply back-pressure if it is due."""
        if len(self._queue) >= self._limit:
            self._pause_reading()

    # -- the end ----------------------------------------------------------------------------------
    def _protocol_error(self, reason: str) -> None:
        log.warning("mqtt: %s", reason)
        self._fail(MqttError(f"connection lost: {reason}"))

    def _fail(self, err: MqttError) -> None:
        """End the connection with ``err`` (the transport is aborted)."""
        if self._disconnected is not None:
            _set_exc(self._disconnected, err)
        if self._connected is not None:
            _set_exc(self._connected, err)
        self._fail_pending(MqttError(f"connection lost before acknowledgement: {err}"))
        self._teardown()

    def _lost(self, exc: Exception | None) -> None:
        if self._disconnected is not None:
            if self._closing and exc is None:
                _set_result(self._disconnected)
            else:
                err = MqttError(f"connection lost: {exc!r}" if exc else "connection lost")
                _set_exc(self._disconnected, err)
                if self._connected is not None:
                    _set_exc(self._connected, err)
        self._fail_pending(MqttError("connection lost before acknowledgement"))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self._misc_task is not None:
            self._misc_task.cancel()

    def _fail_pending(self, err: MqttError) -> None:
        for fut in self._pending_pub.values():
            _set_exc(fut.fut if isinstance(fut, _Group) else fut, err)
        for sfut in self._pending_sub.values():
            _set_exc(sfut, err)
        self._pending_pub.clear()
        self._pending_sub.clear()
        self._backlog.clear()

    async def _misc_loop(self) -> None:
        # Keep-alive: a PINGREQ when nothing was sent for ``keepalive`` seconds; no answer within
        # another ``keepalive`` seconds means the link is dead. A timer is the point here.
        while self._proto is not None and self._disconnected is not None:
            await asyncio.sleep(1)
            if self._disconnected.done() or self._keepalive <= 0:
                continue
            now = time.monotonic()
            if self._ping_sent is not None and now - self._ping_sent > self._keepalive:
                self._fail(MqttError("connection lost: keep-alive timeout (no PINGRESP)"))
                return
            if self._ping_sent is None and now - self._last_out >= self._keepalive:
                self._ping_sent = now
                self._proto.send(codec.PINGREQ_PACKET)


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
