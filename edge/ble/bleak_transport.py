"""The real radio: :class:`edge.ble.transport.BleTransport` over bleak (BlueZ on the hub).

Structured for tests without Bluetooth: the scanner and client *classes* are injected
(``BleakTransport(scanner_cls=FakeScanner, client_cls=FakeClient)``); only the calls below are used:

* ``await scanner_cls.discover(timeout=..., return_adv=True, **kw)``
  -> ``{address: (BLEDevice, AdvertisementData)}``
* ``client_cls(device_or_address, disconnected_callback=..., timeout=..., **kw)`` with
  ``connect()``, ``disconnect()``, ``is_connected``, ``services`` (iterable of services with
  ``uuid`` and ``characteristics``), ``read_gatt_char``, ``write_gatt_char(..., response=)``,
  ``start_notify(uuid, callback)``, ``stop_notify``.

Notifications: bleak runs an async callback as a fresh task per notification, which would let two
records be handled concurrently and out of order. The adapter registers a plain callback that puts
(characteristic, bytes) on one bounded queue per link, and one worker awaits the session's handlers
in arrival order (so a RACP response is handled after the records notified before it). On BlueZ
the stack confirms an indication itself, before the handler has run, so the edge cannot withhold
the confirmation: the session persists inside the handler and deduplicates replays by key. If a
handler fails (e.g. the outbox is full) the adapter disconnects, so the device does not go on
sending records into the void.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from edge.ble.transport import Advertisement, NotifyHandler, TransportError, normalize_uuid

log = logging.getLogger(__name__)

NOTIFY_QUEUE = 1024

#: ``sink(address, characteristic, data)``: keep a notification the queue had no room for.
OverflowSink = Callable[[str, str, bytes], None]
DISCONNECT_TIMEOUT = 10.0
NO_BLUEZ = (
    "BlueZ is not reachable (no D-Bus system bus or bluetoothd): install and start it "
    "(apt-get install bluez; systemctl enable --now bluetooth), or select the simulated radio"
)


def _bleak_errors() -> tuple[type[BaseException], ...]:
    try:
        from bleak.exc import BleakError
    except ImportError:  # pragma: no cover - bleak is in the edge extra
        return (OSError,)
    return (BleakError, OSError, EOFError)


class BleakTransport:
    """``BleTransport`` over bleak. ``adapter`` is the BlueZ adapter name (``hci0``)."""

    def __init__(
        self,
        *,
        adapter: str | None = None,
        scanner_cls: Any = None,
        client_cls: Any = None,
    ) -> None:
        if scanner_cls is None or client_cls is None:
            from bleak import BleakClient, BleakScanner

            scanner_cls = scanner_cls or BleakScanner
            client_cls = client_cls or BleakClient
        self._scanner_cls = scanner_cls
        self._client_cls = client_cls
        self._extra: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
        self._errors = _bleak_errors()
        self._errors_or_timeout: tuple[type[BaseException], ...] = (TimeoutError, *self._errors)
        self.handler_failures = 0
        #: Where a notification goes when the queue is full: BlueZ has already confirmed it to
        #: the device (which deletes it), so it must be kept, durably. Set by the agent
        #: (``set_overflow``) to a synchronous write to the outbox; None: counted and dropped.
        self.overflow: OverflowSink | None = None
        self.spilled_notifications = 0
        self._devices: dict[str, Any] = {}  # address -> BLEDevice from the last scan

    async def scan(self, timeout: float) -> Sequence[Advertisement]:
        try:
            found = await asyncio.wait_for(
                self._scanner_cls.discover(timeout=timeout, return_adv=True, **self._extra),
                timeout + 10.0,
            )
        except TimeoutError as exc:
            raise TransportError(f"scan did not finish within {timeout + 10.0:.0f}s") from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            # bleak reaches BlueZ over the D-Bus system bus; without it the error is a bare
            # "[Errno 2] No such file or directory"
            raise TransportError(f"scan failed: {NO_BLUEZ} ({exc})") from exc
        except self._errors as exc:
            raise TransportError(f"scan failed: {exc}") from exc
        out: list[Advertisement] = []
        for address, (device, adv) in found.items():
            self._devices[str(address).upper()] = device
            out.append(
                Advertisement(
                    address=str(address).upper(),
                    name=adv.local_name or getattr(device, "name", None),
                    service_uuids=tuple(normalize_uuid(u) for u in adv.service_uuids),
                    rssi=adv.rssi,
                    manufacturer_data=dict(adv.manufacturer_data),
                )
            )
        return out

    def set_overflow(self, sink: OverflowSink) -> None:
        self.overflow = sink

    def link(self, address: str) -> BleakLink:
        a = address.upper()
        return BleakLink(self, a, self._devices.get(a, a))


class BleakLink:
    """One connection (``BleLink``)."""

    def __init__(self, transport: BleakTransport, address: str, target: Any) -> None:
        self._t = transport
        self._address = address
        self._target = target
        self._client: Any = None
        self._disconnected = asyncio.Event()
        self._handlers: dict[str, NotifyHandler] = {}
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(NOTIFY_QUEUE)
        self._worker: asyncio.Task[None] | None = None
        self.dropped_notifications = 0

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected)

    def _on_disconnect(self, _client: Any) -> None:
        self._disconnected.set()

    async def connect(self, timeout: float) -> None:
        self._disconnected.clear()
        self._client = self._t._client_cls(
            self._target,
            disconnected_callback=self._on_disconnect,
            timeout=timeout,
            **self._t._extra,
        )
        try:
            await asyncio.wait_for(self._client.connect(), timeout)
        except TimeoutError as exc:
            raise TransportError(f"{self._address}: connect timed out after {timeout}s") from exc
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: connect failed: {exc}") from exc

    async def disconnect(self) -> None:
        await self._stop_worker()
        self._handlers.clear()
        if self._client is None:
            return
        try:
            await asyncio.wait_for(self._client.disconnect(), DISCONNECT_TIMEOUT)
        except self._t._errors_or_timeout as exc:
            log.debug("%s: disconnect: %r", self._address, exc)
        self._disconnected.set()

    async def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _require(self) -> Any:
        if self._client is None:
            raise TransportError(f"{self._address}: not connected")
        return self._client

    async def services(self) -> Sequence[str]:
        client = self._require()
        try:
            return [normalize_uuid(s.uuid) for s in client.services]
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: service discovery: {exc}") from exc

    async def characteristics(self) -> Sequence[str]:
        client = self._require()
        try:
            return [normalize_uuid(c.uuid) for s in client.services for c in s.characteristics]
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: service discovery: {exc}") from exc

    async def read(self, char_uuid: str, timeout: float) -> bytes:
        client = self._require()
        try:
            return bytes(await asyncio.wait_for(client.read_gatt_char(char_uuid), timeout))
        except TimeoutError as exc:
            raise TransportError(f"{self._address}: read {char_uuid} timed out") from exc
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: read {char_uuid}: {exc}") from exc

    async def write(self, char_uuid: str, data: bytes, *, response: bool, timeout: float) -> None:
        client = self._require()
        try:
            await asyncio.wait_for(
                client.write_gatt_char(char_uuid, data, response=response), timeout
            )
        except TimeoutError as exc:
            raise TransportError(f"{self._address}: write {char_uuid} timed out") from exc
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: write {char_uuid}: {exc}") from exc

    async def start_notify(self, char_uuid: str, handler: NotifyHandler) -> None:
        client = self._require()
        key = normalize_uuid(char_uuid)

        def callback(_sender: Any, data: bytearray) -> None:
            try:
                self._queue.put_nowait((key, bytes(data)))
            except asyncio.QueueFull:
                self._overflow(key, bytes(data))

        self._handlers[key] = handler
        try:
            await client.start_notify(char_uuid, callback)
        except self._t._errors as exc:
            self._handlers.pop(key, None)
            raise TransportError(f"{self._address}: start_notify {char_uuid}: {exc}") from exc
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"ble-notify:{self._address}")

    def _overflow(self, key: str, data: bytes) -> None:
        sink = self._t.overflow
        if sink is not None:
            try:
                sink(self._address, key, data)
            except Exception as exc:  # noqa: BLE001 - any failure to keep it is a loss, counted
                log.error("%s: overflow record could not be kept (%s)", self._address, exc)
            else:
                self._t.spilled_notifications += 1
                log.warning("%s: notification queue full; record of %s kept", self._address, key)
                return
        self.dropped_notifications += 1
        log.error("%s: notification queue full; record of %s dropped", self._address, key)

    async def _work(self) -> None:
        """Run the handlers one at a time in arrival order, across characteristics (a RACP
        response is handled only after the records notified before it)."""
        while True:
            key, data = await self._queue.get()
            handler = self._handlers.get(key)
            if handler is None:
                continue
            try:
                await handler(data)
            except Exception as exc:  # noqa: BLE001 - any handler failure ends the link (doc), counted
                self._t.handler_failures += 1
                log.error(
                    "%s: handler of %s failed (%s); disconnecting",
                    self._address,
                    key,
                    type(exc).__name__,
                )
                self._disconnected.set()
                with contextlib.suppress(*self._t._errors_or_timeout):
                    await asyncio.wait_for(self._require().disconnect(), DISCONNECT_TIMEOUT)
                self._worker = None
                return

    async def stop_notify(self, char_uuid: str) -> None:
        client = self._require()
        self._handlers.pop(normalize_uuid(char_uuid), None)
        try:
            await client.stop_notify(char_uuid)
        except self._t._errors as exc:
            raise TransportError(f"{self._address}: stop_notify {char_uuid}: {exc}") from exc

    async def wait_disconnected(self) -> None:
        await self._disconnected.wait()
