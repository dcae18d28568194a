"""A small asyncio MQTT client over paho-mqtt 2.x, with acknowledgement under our control.

Why not aiomqtt: aiomqtt 2.x (the current release) acknowledges every QoS 1 message on receipt and
offers no manual acknowledgement (empicano/aiomqtt#345, open); the ingester must send PUBACK only
after its database commit. paho-mqtt 2.x has ``manual_ack`` and is the client aiomqtt itself wraps,
so this module wires paho's socket callbacks into the running event loop the same way aiomqtt does
and adds: futures for PUBACK/SUBACK, a bounded inbound queue, manual ``ack()``, MQTT 5 or 3.1.1.

Every await here has a timeout; a lost connection surfaces as :class:`MqttError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]


class MqttError(Exception):
    """The connection failed, was refused, or was lost; or an operation timed out."""


@dataclass(frozen=True, slots=True)
class Message:
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
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            **kw,
        )


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
        self._receive_maximum = receive_maximum
        self._v5 = settings.protocol == "5"
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else clean_start,
            manual_ack=manual_ack,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            ctx = ssl.create_default_context(cafile=settings.ca_file)
            self._client.tls_set_context(ctx)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        c = self._client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_socket_register_write
        c.on_socket_unregister_write = self._on_socket_unregister_write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[None] | None = None
        self._pending_pub: dict[int, asyncio.Future[None]] = {}
        self._pending_sub: dict[int, asyncio.Future[list[int]]] = {}
        # Bounded by back-pressure: when the queue holds ``_limit`` messages the socket is no
        # longer read (TCP flow control reaches the broker) until the consumer has drained half.
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._limit = queue_size or max(2 * receive_maximum, 64)
        self._reader: Any = None
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
        props: Properties | None = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry
            props.ReceiveMaximum = self._receive_maximum
        s = self.settings

        def _blocking_connect() -> None:
            self._client.connect(
                s.host,
                s.port,
                keepalive=s.keepalive,
                clean_start=self._clean_start if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )

        try:
            await asyncio.wait_for(
                loop.run_in_executor(None, _blocking_connect), timeout=s.connect_timeout
            )
            sock = self._client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.wait_for(asyncio.shield(self._connected), timeout=s.connect_timeout)
        except (OSError, TimeoutError, paho.WebsocketConnectionError) as exc:
            self._teardown()
            raise MqttError(f"cannot connect to {s.host}:{s.port}: {exc or 'timeout'}") from exc
        except MqttError:
            self._teardown()
            raise

    def _teardown(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        sock = self._client.socket()
        if sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())

    async def disconnect(self, timeout: float = 5.0) -> None:
        if self._disconnected is None:
            return
        if not self._disconnected.done():
            self._client.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._disconnected), timeout)
        self._fail_pending(MqttError("disconnected"))
        if self._misc_task is not None:
            self._misc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc_task

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected()

    async def wait_disconnected(self) -> None:
        """Returns (or raises MqttError) when the connection ends."""
        assert self._disconnected is not None
        await asyncio.shield(self._disconnected)

    # -- operations -------------------------------------------------------------------------------
    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a PUBLISH; the future resolves on PUBACK (QoS 1) or when sent (QoS 0)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if not self._client.is_connected():
            fut.set_exception(MqttError("not connected"))
            return fut
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            fut.set_exception(MqttError(f"publish failed: {paho.error_string(info.rc)}"))
            return fut
        if qos == 0 or info.is_published():
            fut.set_result(None)
        else:
            self._pending_pub[info.mid] = fut
        return fut

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
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe failed: {paho.error_string(rc)}")
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        self._pending_sub[mid] = fut
        try:
            codes = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise MqttError(f"no SUBACK within {timeout}s") from exc
        if any(c >= 0x80 for c in codes):
            raise MqttError(f"subscription to {topic_filter!r} refused (reason {codes})")

    def ack(self, message: Message) -> None:
        """Send the PUBACK for a message received with ``manual_ack=True``."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    async def messages(self) -> AsyncIterator[Message]:
        """Inbound messages until the connection ends (then MqttError)."""
        assert self._disconnected is not None
        while True:
            if self._queue.empty() and self._disconnected.done():
                self._disconnected.result()
                raise MqttError("connection closed")
            get: asyncio.Future[Message] = asyncio.ensure_future(self._queue.get())
            waiters: set[asyncio.Future[Any]] = {get, self._disconnected}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                self._maybe_resume()
                yield get.result()
            else:
                get.cancel()

    def get_nowait(self) -> Message | None:
        """The next already-received message, if any (for draining into a batch)."""
        try:
            msg = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        self._maybe_resume()
        return msg

    def _maybe_resume(self) -> None:
        if self._paused and self._queue.qsize() <= self._limit // 2 and self._loop is not None:
            sock = self._client.socket()
            if sock is not None and self._reader is not None:
                self._loop.add_reader(sock.fileno(), self._reader)
            self._paused = False

    # -- paho callbacks (all run on the event loop thread, except during connect) -----------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert self._loop is not None and self._connected is not None
        self.session_present = bool(flags.session_present)
        fut = self._connected
        # CONNACK is read by reader() on the loop thread: settle the future now, before the
        # broker's close turns into a less specific "connection lost".
        if reason_code.is_failure:
            _set_exc(fut, MqttError(f"connection refused: {reason_code}"))
        else:
            _set_result(fut)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert self._loop is not None and self._disconnected is not None
        if reason_code.value == 0:
            _set_result(self._disconnected)
        else:
            err = MqttError(f"connection lost: {reason_code}")
            _set_exc(self._disconnected, err)
            if self._connected is not None:
                _set_exc(self._connected, err)
        self._fail_pending(MqttError(f"connection lost before acknowledgement: {reason_code}"))

    def _fail_pending(self, err: MqttError) -> None:
        for fut in self._pending_pub.values():
            _set_exc(fut, err)
        for sfut in self._pending_sub.values():
            _set_exc(sfut, err)
        self._pending_pub.clear()
        self._pending_sub.clear()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        fut = self._pending_pub.pop(mid, None)
        if fut is None:
            return
        if reason_code.is_failure:
            _set_exc(fut, MqttError(f"publish refused by broker: {reason_code}"))
        else:
            _set_result(fut)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        fut = self._pending_sub.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result([rc.value for rc in reason_codes])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._queue.put_nowait(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid))
        if not self._paused and self._queue.qsize() >= self._limit and self._loop is not None:
            sock = self._client.socket()
            if sock is not None:
                self._loop.remove_reader(sock.fileno())
            self._paused = True

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        loop = self._loop

        def reader() -> None:
            try:
                while True:
                    client.loop_read()
                    pending = getattr(sock, "pending", None)
                    if pending is not None and pending() > 0:
                        continue
                    break
            except OSError as exc:  # socket/SSL errors: the link is gone
                log.debug("mqtt read failed: %r", exc)
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                if self._disconnected is not None:
                    _set_exc(self._disconnected, MqttError(f"connection lost: {exc!r}"))

        def start() -> None:
            self._reader = reader
            self._paused = False
            loop.add_reader(sock.fileno(), reader)
            self._misc_task = loop.create_task(self._misc_loop())

        loop.call_soon_threadsafe(start)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        fd = sock.fileno()
        if fd > -1:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        if self._misc_task is not None:
            self._loop.call_soon_threadsafe(self._misc_task.cancel)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        loop = self._loop

        def writer() -> None:
            try:
                client.loop_write()
            except OSError as exc:  # as in reader()
                log.debug("mqtt write failed: %r", exc)
                with contextlib.suppress(Exception):
                    loop.remove_writer(sock.fileno())

        loop.call_soon_threadsafe(loop.add_writer, sock.fileno(), writer)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock.fileno())

    async def _misc_loop(self) -> None:
        # paho's keep-alive bookkeeping wants a call about once a second; a timer is the point here.
        while self._client.loop_misc() == paho.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1)


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        # Mark retrieved: a lost connection nobody awaited is not an "unhandled" error.
        fut.exception()
