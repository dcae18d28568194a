"""Serve a :class:`~simulators.ble.radio.SimulatedRadio` to edge agents in other processes.

The far end is :class:`edge.ble.remote_transport.RemoteRadio`; the protocol is described there.
Each client connection gets its own links (one per address); a notification is sent as an event
and the simulated device's handler waits for the client's ``notified`` answer, so confirmations
mean what they mean in-process: the edge's handler has returned. When a client goes away, its
links are closed (the devices see the central disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Final

import msgspec

from edge.ble.remote_transport import (
    MAX_LINE,
    PROTOCOL_VERSION,
    AdvertisementWire,
    Event,
    Request,
    Response,
)
from edge.ble.transport import NotifyHandler, TransportError
from simulators.ble.radio import SimulatedLink, SimulatedRadio

log = logging.getLogger(__name__)

#: Longest wait for a client to confirm one notification (the in-process ATT timeout).
CONFIRM_TIMEOUT: Final = 30.0
#: Requests of one client handled at the same time.
MAX_CONCURRENT: Final = 64

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Request)


class HandlerFailed(Exception):
    """The client's handler raised: the device must not count the record as confirmed."""


class _Client:
    def __init__(self, radio: SimulatedRadio, writer: asyncio.StreamWriter) -> None:
        self.radio = radio
        self.writer = writer
        self.links: dict[str, SimulatedLink] = {}
        self.watchers: dict[str, asyncio.Task[None]] = {}
        self.confirms: dict[int, asyncio.Future[bool]] = {}
        self.nids = itertools.count(1)
        self.slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, msg: msgspec.Struct) -> None:
        if not self.writer.is_closing():
            self.writer.write(_encoder.encode(msg) + b"\n")

    async def handle(self, req: Request) -> None:
        try:
            resp = await self._dispatch(req)
        except TransportError as exc:
            resp = Response(id=req.id or 0, ok=False, error=str(exc))
        except (ValueError, KeyError) as exc:
            resp = Response(id=req.id or 0, ok=False, error=f"{req.op}: bad request ({exc})")
        self.send(resp)
        with contextlib.suppress(OSError, RuntimeError):
            await asyncio.wait_for(self.writer.drain(), CONFIRM_TIMEOUT)

    def _link(self, address: str | None) -> SimulatedLink:
        if not address:
            raise ValueError("address missing")
        link = self.links.get(address.upper())
        if link is None:
            raise TransportError(f"{address}: not connected")
        return link

    async def _dispatch(self, req: Request) -> Response:
        rid = req.id or 0
        op = req.op
        if op == "hello":
            return Response(id=rid, ok=True, version=PROTOCOL_VERSION)
        if op == "scan":
            found = await self.radio.scan(min(req.timeout or 5.0, 60.0))
            return Response(
                id=rid,
                ok=True,
                found=[
                    AdvertisementWire(
                        address=a.address,
                        name=a.name,
                        service_uuids=list(a.service_uuids),
                        rssi=a.rssi,
                        manufacturer_data={k: v.hex() for k, v in a.manufacturer_data.items()},
                    )
                    for a in found
                ],
            )
        if op == "connect":
            address = (req.address or "").upper()
            if not address:
                raise ValueError("address missing")
            old = self.links.get(address)
            if old is not None and old.is_connected:
                raise TransportError(f"{address}: already connected")
            link = self.radio.link(address)
            await link.connect(min(req.timeout or 20.0, 120.0))
            self.links[address] = link
            self.watchers[address] = asyncio.create_task(self._watch(address, link))
            return Response(id=rid, ok=True)
        link = self._link(req.address)
        if op == "disconnect":
            await link.disconnect()
            return Response(id=rid, ok=True)
        if op == "services":
            return Response(id=rid, ok=True, uuids=list(await link.services()))
        if op == "characteristics":
            return Response(id=rid, ok=True, uuids=list(await link.characteristics()))
        char = req.char
        if not char:
            raise ValueError("char missing")
        if op == "read":
            data = await link.read(char, min(req.timeout or 5.0, 60.0))
            return Response(id=rid, ok=True, data=data.hex())
        if op == "write":
            await link.write(
                char,
                bytes.fromhex(req.data or ""),
                response=bool(req.response),
                timeout=min(req.timeout or 5.0, 60.0),
            )
            return Response(id=rid, ok=True)
        if op == "start_notify":
            await link.start_notify(char, self._handler(link.address, char))
            return Response(id=rid, ok=True)
        if op == "stop_notify":
            await link.stop_notify(char)
            return Response(id=rid, ok=True)
        raise ValueError(f"unknown op {op!r}")

    def _handler(self, address: str, char: str) -> NotifyHandler:
        async def handler(data: bytes) -> None:
            nid = next(self.nids)
            fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self.confirms[nid] = fut
            self.send(Event(event="notify", address=address, char=char, data=data.hex(), nid=nid))
            try:
                ok = await asyncio.wait_for(fut, CONFIRM_TIMEOUT)
            finally:
                self.confirms.pop(nid, None)
            if not ok:
                raise HandlerFailed(f"{address}: the edge's handler failed")

        return handler

    def done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()

    def notified(self, req: Request) -> None:
        fut = self.confirms.get(req.nid or 0)
        if fut is not None and not fut.done():
            fut.set_result(not req.failed)

    async def _watch(self, address: str, link: SimulatedLink) -> None:
        await link.wait_disconnected()
        if self.links.get(address) is link:
            del self.links[address]
        self.send(
            Event(
                event="disconnected",
                address=address,
                reason=link.disconnect_reason or "disconnected",
            )
        )

    async def close(self) -> None:
        for fut in self.confirms.values():
            if not fut.done():
                fut.set_result(False)
        for link in list(self.links.values()):
            with contextlib.suppress(TransportError):
                await link.disconnect()
        for t in [*self.watchers.values(), *self.tasks]:
            t.cancel()


async def _serve_client(
    radio: SimulatedRadio, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    client = _Client(radio, writer)
    peer = writer.get_extra_info("peername")
    log.info("edge connected from %s", peer)
    try:
        while True:
            try:
                line = await reader.readline()
            except (ValueError, OSError):
                break
            if not line:
                break
            try:
                req = _decoder.decode(line)
            except msgspec.DecodeError:
                log.warning("undecodable request from %s; closing", peer)
                break
            if req.op == "notified":
                client.notified(req)
                continue
            await client.slots.acquire()
            task = asyncio.create_task(client.handle(req))
            client.tasks.add(task)
            task.add_done_callback(client.done)
    finally:
        await client.close()
        writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        log.info("edge from %s gone", peer)


async def serve(radio: SimulatedRadio, host: str, port: int) -> asyncio.Server:
    """Start serving ``radio`` on ``host:port`` (port 0: any free port; see ``sockets``)."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_client(radio, reader, writer)

    return await asyncio.start_server(on_client, host, port, limit=MAX_LINE)
