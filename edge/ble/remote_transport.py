"""A BLE transport over a socket to a radio in another process (``telehub simulate``).

The edge agent selects it with ``[ble] transport = "simulated"`` and ``simulator = "host:port"``
in its configuration; everything above this seam (sessions, drivers, outbox) runs exactly as on
BlueZ. The far end is :mod:`simulators.ble.server`, which serves a
:class:`simulators.ble.SimulatedRadio` with simulated devices.

The protocol is newline-delimited JSON, one connection per transport (``PROTOCOL_VERSION``):

* the client sends requests ``{"id": n, "op": ..., ...}`` (:class:`Request`): ``hello``,
  ``scan``, ``connect``, ``disconnect``, ``services``, ``characteristics``, ``read``, ``write``,
  ``start_notify``, ``stop_notify``; the server answers each with ``{"id": n, "ok": ...}``
  (:class:`Response`) in any order;
* the server sends events (:class:`Event`): ``notify`` (``nid``, address, characteristic, data)
  and ``disconnected`` (address, reason);
* the client answers every ``notify`` with ``{"op": "notified", "nid": k}`` once its handler has
  returned: the simulated device counts an indication as confirmed only then, as the in-process
  radio does (handlers of one link run one after the other, in order).

Every await has a timeout; a lost connection fails every pending call with
:class:`~edge.ble.transport.TransportError` and ends every link (the agent reconnects the way it
does after a radio failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from edge.ble.transport import Advertisement, NotifyHandler, TransportError, normalize_uuid

log = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
#: Seconds for a request without a timeout of its own (hello, services, notify set-up).
CALL_TIMEOUT: Final = 10.0
#: Added to a request's own timeout: the far side enforces it, this covers the round trip.
MARGIN: Final = 5.0
#: Longest line accepted (a scan result of many devices, a long read).
MAX_LINE: Final = 1 << 20
#: Notifications of one link waiting for its handler (the server waits for each confirmation).
LINK_QUEUE: Final = 256


class Request(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    op: str
    id: int | None = None
    address: str | None = None
    char: str | None = None
    data: str | None = None  # hex
    timeout: float | None = None
    response: bool | None = None
    nid: int | None = None
    version: int | None = None
    failed: bool | None = None  # notified: the handler raised (the device sees no confirmation)


class AdvertisementWire(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    name: str | None = None
    service_uuids: list[str] = []
    rssi: int | None = None
    manufacturer_data: dict[int, str] = {}  # company id -> hex


class Response(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: int
    ok: bool
    error: str | None = None
    data: str | None = None  # hex, for read
    uuids: list[str] | None = None  # services / characteristics
    found: list[AdvertisementWire] | None = None  # scan
    version: int | None = None  # hello


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    event: str  # "notify" | "disconnected"
    address: str
    char: str | None = None
    data: str | None = None
    nid: int | None = None
    reason: str | None = None


class _Incoming(msgspec.Struct, frozen=True, kw_only=True):
    """A line from the server: a response (``id``) or an event (``event``)."""

    id: int | None = None
    ok: bool = False
    error: str | None = None
    data: str | None = None
    uuids: list[str] | None = None
    found: list[AdvertisementWire] | None = None
    version: int | None = None
    event: str | None = None
    address: str | None = None
    char: str | None = None
    nid: int | None = None
    reason: str | None = None


_encoder = msgspec.json.Encoder()
_incoming = msgspec.json.Decoder(_Incoming)


def parse_endpoint(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """``host:port`` (IPv4/hostname) → (host, port); ValueError with the reason. ``any_port``:
    port 0 (a listener's "any free port") is allowed."""
    host, sep, port = text.rpartition(":")
    low = 0 if any_port else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) < 65536:
        raise ValueError(f"simulator: {text!r} is not host:port")
    return host, int(port)


class RemoteRadio:
    """``BleTransport`` over a socket (see the module docstring)."""

    def __init__(self, endpoint: str, *, connect_timeout: float = CALL_TIMEOUT) -> None:
        self.host, self.port = parse_endpoint(endpoint)
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[_Incoming]] = {}
        self._links: dict[str, RemoteLink] = {}
        self._lock = asyncio.Lock()

    # -- connection -------------------------------------------------------------------------------
    async def _ensure(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        self.host, self.port, limit=MAX_LINE
                    )
            except (OSError, TimeoutError) as exc:
                raise TransportError(
                    f"simulator at {self.host}:{self.port} unreachable ({type(exc).__name__})"
                ) from exc
            self._reader, self._writer = reader, writer
            self._pump = asyncio.create_task(self._read_loop(reader), name="remote-radio")
        hello = await self._call(Request(op="hello", version=PROTOCOL_VERSION), CALL_TIMEOUT)
        if hello.version != PROTOCOL_VERSION:
            await self.aclose()
            raise TransportError(f"simulator speaks protocol {hello.version}, not 1")
        return writer

    async def aclose(self) -> None:
        writer, pump = self._writer, self._pump
        self._writer = self._reader = None
        self._pump = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), CALL_TIMEOUT)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self._lost("transport closed")

    def _lost(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransportError(f"simulator connection lost ({reason})"))
        self._pending.clear()
        for link in self._links.values():
            link._ended(reason)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "closed by the simulator"
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE
                    reason = "line too long"
                    break
                if not line:
                    break
                try:
                    msg = _incoming.decode(line)
                except msgspec.DecodeError:
                    log.warning("simulator sent an undecodable line; closing")
                    reason = "protocol error"
                    break
                if msg.event is not None:
                    self._event(msg)
                elif (
                    msg.id is not None
                    and (fut := self._pending.pop(msg.id, None)) is not None
                    and not fut.done()
                ):
                    fut.set_result(msg)
        except OSError as exc:
            reason = type(exc).__name__
        finally:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._lost(reason)

    def _event(self, msg: _Incoming) -> None:
        link = self._links.get((msg.address or "").upper())
        if msg.event == "disconnected":
            if link is not None:
                link._ended(msg.reason or "disconnected")
        elif (
            msg.event == "notify"
            and msg.nid is not None
            and (link is None or not link._deliver(msg))
        ):
            self._send_nowait(Request(op="notified", nid=msg.nid))  # nobody listens

    def _send_nowait(self, req: Request) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_encoder.encode(req) + b"\n")

    async def _call(self, req: Request, timeout: float) -> _Incoming:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise TransportError("simulator connection lost")
        rid = next(self._ids)
        fut: asyncio.Future[_Incoming] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        writer.write(_encoder.encode(msgspec.structs.replace(req, id=rid)) + b"\n")
        try:
            async with asyncio.timeout(timeout):
                await writer.drain()
                msg = await fut
        except TimeoutError as exc:
            raise TransportError(
                f"{req.op}: no answer from the simulator in {timeout:.0f}s"
            ) from exc
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"{req.op}: simulator connection lost") from exc
        finally:
            self._pending.pop(rid, None)
        if not msg.ok:
            raise TransportError(msg.error or f"{req.op} failed")
        return msg

    async def request(self, req: Request, timeout: float) -> _Incoming:
        await self._ensure()
        return await self._call(req, timeout)

    # -- BleTransport ---------------------------------------------------------------------------
    async def scan(self, timeout: float) -> Sequence[Advertisement]:
        msg = await self.request(Request(op="scan", timeout=timeout), timeout + MARGIN)
        return [
            Advertisement(
                address=a.address.upper(),
                name=a.name,
                service_uuids=tuple(normalize_uuid(u) for u in a.service_uuids),
                rssi=a.rssi,
                manufacturer_data={k: bytes.fromhex(v) for k, v in a.manufacturer_data.items()},
            )
            for a in msg.found or ()
        ]

    def link(self, address: str) -> RemoteLink:
        a = address.upper()
        old = self._links.get(a)
        if old is not None and old.is_connected:
            return old
        link = RemoteLink(self, a)
        self._links[a] = link
        return link


class RemoteLink:
    """``BleLink`` over a :class:`RemoteRadio`."""

    def __init__(self, radio: RemoteRadio, address: str) -> None:
        self._radio = radio
        self._address = address
        self._connected = False
        self._disconnected = asyncio.Event()
        self._handlers: dict[str, NotifyHandler] = {}
        self._queue: asyncio.Queue[_Incoming] = asyncio.Queue(LINK_QUEUE)
        self._worker: asyncio.Task[None] | None = None
        self.disconnect_reason: str | None = None

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def _req(self, op: str, wait: float = CALL_TIMEOUT, **kw: Any) -> _Incoming:
        """``op`` on this link; ``wait`` bounds the round trip, ``kw`` are the request's fields."""
        return await self._radio.request(Request(op=op, address=self._address, **kw), wait)

    async def connect(self, timeout: float) -> None:
        self._disconnected.clear()
        self.disconnect_reason = None
        await self._req("connect", timeout + MARGIN, timeout=timeout)
        self._connected = True
        self._worker = asyncio.create_task(self._run_handlers(), name=f"remote:{self._address}")

    async def disconnect(self) -> None:
        if self._connected:
            with contextlib.suppress(TransportError):
                await self._req("disconnect")
        self._ended("disconnected by the edge")

    def _ended(self, reason: str) -> None:
        if self._connected or not self._disconnected.is_set():
            self.disconnect_reason = self.disconnect_reason or reason
        self._connected = False
        self._disconnected.set()
        self._handlers.clear()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _deliver(self, msg: _Incoming) -> bool:
        if not self._connected or (msg.char or "") not in self._handlers:
            return False
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            return False  # cannot happen with a conforming server: it waits for each answer
        return True

    async def _run_handlers(self) -> None:
        while True:
            msg = await self._queue.get()
            handler = self._handlers.get(msg.char or "")
            failed = False
            try:
                if handler is not None:
                    await handler(bytes.fromhex(msg.data or ""))
            except Exception:  # the device must not count it as confirmed
                log.exception("notification handler of %s failed", self._address)
                failed = True
            self._radio._send_nowait(Request(op="notified", nid=msg.nid, failed=failed or None))

    async def services(self) -> Sequence[str]:
        return list((await self._req("services")).uuids or ())

    async def characteristics(self) -> Sequence[str]:
        return list((await self._req("characteristics")).uuids or ())

    async def read(self, char_uuid: str, timeout: float) -> bytes:
        msg = await self._req(
            "read", timeout + MARGIN, char=normalize_uuid(char_uuid), timeout=timeout
        )
        return bytes.fromhex(msg.data or "")

    async def write(self, char_uuid: str, data: bytes, *, response: bool, timeout: float) -> None:
        await self._req(
            "write",
            timeout + MARGIN,
            char=normalize_uuid(char_uuid),
            data=data.hex(),
            response=response,
            timeout=timeout,
        )

    async def start_notify(self, char_uuid: str, handler: NotifyHandler) -> None:
        uuid = normalize_uuid(char_uuid)
        self._handlers[uuid] = handler
        try:
            await self._req("start_notify", char=uuid)
        except TransportError:
            self._handlers.pop(uuid, None)
            raise

    async def stop_notify(self, char_uuid: str) -> None:
        uuid = normalize_uuid(char_uuid)
        self._handlers.pop(uuid, None)
        await self._req("stop_notify", char=uuid)

    async def wait_disconnected(self) -> None:
        await self._disconnected.wait()
