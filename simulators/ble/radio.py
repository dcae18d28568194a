"""The central side: :class:`SimulatedRadio` (a ``BleTransport``) and :class:`SimulatedLink`.

Behaves like bleak on BlueZ where the edge can tell the difference:

* ``scan(timeout)`` lasts ``timeout`` (or the radio's ``scan_latency`` if shorter) and returns
  every peripheral seen advertising during the window.
* ``connect(timeout)`` waits for the peripheral to be connectable (advertising, in range, not
  connected to someone else) and fails with :class:`TransportError` when ``timeout`` runs out.
* GATT errors, missing characteristics, wrong properties and calls on a dead link raise
  :class:`TransportError` (:class:`GattError` when the peripheral answered with an ATT code).
* Notifications and indications call the handler given to ``start_notify`` in a task of the
  radio's own; see :mod:`simulators.ble.peripheral` for the confirmation rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edge.ble.transport import (
    Advertisement,
    BleLink,
    BleTransport,
    NotifyHandler,
    TransportError,
    normalize_uuid,
)
from simulators.ble.gatt import AttError, AttErrorCode, Characteristic, Prop
from simulators.ble.peripheral import Connection, Peripheral
from simulators.clock import SimTime

log = logging.getLogger(__name__)

MAX_CENTRAL_TASKS = 1024  # bound on handler tasks still running (edge code that never returns)


class GattError(TransportError):
    """The peripheral answered a read/write with an ATT error code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class SimulatedRadio:
    """An in-process radio: peripherals are added to it; the edge scans and links through it."""

    def __init__(
        self,
        *,
        world: SimTime | None = None,
        scan_latency: float | None = None,
        connect_latency: float = 0.0,
        att_timeout: float = 30.0,
    ) -> None:
        self.world = world if world is not None else SimTime()
        self.scan_latency = scan_latency
        self.connect_latency = connect_latency
        self.att_timeout = att_timeout
        self._peripherals: dict[str, Peripheral] = {}
        self._scanners: list[set[str]] = []
        self._central_tasks: set[asyncio.Task[None]] = set()
        self.handler_failures = 0

    # -- peripherals ----------------------------------------------------------------------------
    def add(self, peripheral: Peripheral) -> None:
        if peripheral.address in self._peripherals:
            raise ValueError(f"{peripheral.address} is already on the radio")
        self._peripherals[peripheral.address] = peripheral
        peripheral._radio = self
        peripheral._update()

    def remove(self, address: str) -> None:
        p = self._peripherals.pop(address.upper())
        if p.connection is not None:
            p.connection.close("removed")
        p._radio = None

    def peripheral(self, address: str) -> Peripheral:
        return self._peripherals[address.upper()]

    @property
    def peripherals(self) -> tuple[Peripheral, ...]:
        return tuple(self._peripherals.values())

    def drop(self, address: str, reason: str = "supervision timeout") -> None:
        """Radio-level link loss (interference, distance)."""
        p = self._peripherals.get(address.upper())
        if p is not None and p.connection is not None:
            p.connection.close(reason)

    def _advertised(self, peripheral: Peripheral) -> None:
        for seen in self._scanners:
            seen.add(peripheral.address)

    # -- BleTransport ---------------------------------------------------------------------------
    async def scan(self, timeout: float) -> Sequence[Advertisement]:
        seen = {p.address for p in self._peripherals.values() if p.advertising}
        self._scanners.append(seen)
        try:
            window = timeout if self.scan_latency is None else min(timeout, self.scan_latency)
            await asyncio.sleep(max(window, 0.0))
        finally:
            self._scanners.remove(seen)
        return tuple(
            self._peripherals[a].advertisement() for a in sorted(seen) if a in self._peripherals
        )

    def link(self, address: str) -> SimulatedLink:
        return SimulatedLink(self, address)

    async def aclose(self) -> None:
        """Drop every link and wait (bounded) for central handlers still running."""
        for p in self._peripherals.values():
            if p.connection is not None:
                p.connection.close("radio closed")
        if self._central_tasks:
            await asyncio.wait(set(self._central_tasks), timeout=self.att_timeout)

    # -- delivery ---------------------------------------------------------------------------------
    def _run_central(self, handler: NotifyHandler, data: bytes, address: str) -> asyncio.Task[None]:
        if len(self._central_tasks) >= MAX_CENTRAL_TASKS:
            raise RuntimeError("too many central handlers still running")

        async def run() -> None:
            await handler(data)

        task = asyncio.get_running_loop().create_task(run(), name=f"central:{address}")
        self._central_tasks.add(task)
        task.add_done_callback(self._central_done)
        return task

    def _central_done(self, task: asyncio.Task[None]) -> None:
        self._central_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The edge's handler failed: counted and logged; the peripheral sees no confirmation.
            self.handler_failures += 1
            exc = task.exception()
            log.warning("central handler failed: %s", type(exc).__name__, exc_info=exc)


class SimulatedLink:
    """A ``BleLink`` to one simulated peripheral (one object per connection attempt, like bleak)."""

    def __init__(self, radio: SimulatedRadio, address: str) -> None:
        self.radio = radio
        self._address = address.upper()
        self._conn: Connection | None = None

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and self._conn.is_open

    @property
    def disconnect_reason(self) -> str | None:
        return None if self._conn is None else self._conn.reason

    async def connect(self, timeout: float) -> None:
        if self.is_connected:
            return
        try:
            async with asyncio.timeout(timeout):
                while True:
                    p = self.radio._peripherals.get(self._address)
                    if p is None:  # not on the radio (yet): BlueZ keeps trying until the timeout
                        await asyncio.sleep(min(0.01, timeout))
                        continue
                    await p.wait_connectable()
                    if self.radio.connect_latency:
                        await asyncio.sleep(self.radio.connect_latency)
                    if p.advertising:
                        break
        except TimeoutError:
            raise TransportError(f"{self._address}: connect timed out after {timeout} s") from None
        conn = Connection(p, self)
        self._conn = conn
        p._attach(conn)

    async def disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close("central")
        await asyncio.sleep(0)

    def _open(self) -> Connection:
        conn = self._conn
        if conn is None or not conn.is_open:
            raise TransportError(f"{self._address}: not connected")
        return conn

    def _char(self, conn: Connection, uuid: str) -> Characteristic:
        key = normalize_uuid(uuid)
        if not conn.peripheral.has_characteristic(key):
            raise TransportError(f"{self._address}: characteristic {key} not found")
        return conn.peripheral.characteristic(key)

    async def services(self) -> Sequence[str]:
        conn = self._open()
        return tuple(s.uuid for s in conn.peripheral.services)

    async def characteristics(self) -> Sequence[str]:
        conn = self._open()
        return tuple(c.uuid for s in conn.peripheral.services for c in s.characteristics)

    async def _guarded(self, conn: Connection, op: Any, timeout: float, what: str) -> Any:
        """Run a peripheral handler; map ATT errors, timeouts and link loss to TransportError."""
        task = asyncio.ensure_future(op)
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {task, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if task not in done:
            task.cancel()
            if not conn.is_open:
                raise TransportError(f"{self._address}: link lost during {what}")
            raise TransportError(f"{self._address}: {what} timed out after {timeout} s")
        exc = task.exception()
        if isinstance(exc, AttError):
            raise GattError(exc.code, f"{self._address}: {what}: {exc}") from exc
        if exc is not None:
            raise exc
        return task.result()

    async def read(self, char_uuid: str, timeout: float) -> bytes:
        conn = self._open()
        ch = self._char(conn, char_uuid)
        if not ch.props & Prop.READ:
            code = AttErrorCode.READ_NOT_PERMITTED
            raise GattError(code, f"{self._address}: read {ch.uuid}: ATT error 0x{code:02x}")
        if ch.on_read is None:
            await asyncio.sleep(0)
            return bytes(ch.value)
        value: bytes = await self._guarded(conn, ch.on_read(), timeout, f"read {ch.uuid}")
        return bytes(value)

    async def write(self, char_uuid: str, data: bytes, *, response: bool, timeout: float) -> None:
        conn = self._open()
        ch = self._char(conn, char_uuid)
        needed = Prop.WRITE if response else Prop.WRITE_NO_RESPONSE
        if not ch.props & needed:
            code = AttErrorCode.WRITE_NOT_PERMITTED
            raise GattError(code, f"{self._address}: write {ch.uuid}: ATT error 0x{code:02x}")
        if ch.on_write is None:
            ch.value = bytes(data)
            await asyncio.sleep(0)
        else:
            try:
                await self._guarded(conn, ch.on_write(bytes(data)), timeout, f"write {ch.uuid}")
            except GattError:
                if response:
                    raise
                # A write command has no response: the error never reaches the central.
                log.debug("%s: write command to %s rejected", self._address, ch.uuid)
                return
        conn.touch()

    async def start_notify(self, char_uuid: str, handler: NotifyHandler) -> None:
        conn = self._open()
        ch = self._char(conn, char_uuid)
        if not ch.subscribable:
            raise TransportError(f"{self._address}: {ch.uuid} has no notify/indicate property")
        conn.subscriptions[ch.uuid] = handler
        conn.touch()
        await asyncio.sleep(0)
        conn.peripheral.on_subscribe(ch.uuid, True)

    async def stop_notify(self, char_uuid: str) -> None:
        conn = self._open()
        ch = self._char(conn, char_uuid)
        if conn.subscriptions.pop(ch.uuid, None) is not None:
            conn.touch()
            conn.peripheral.on_subscribe(ch.uuid, False)
        await asyncio.sleep(0)

    async def wait_disconnected(self) -> None:
        conn = self._conn
        if conn is None:
            return
        await conn.closed.wait()


if TYPE_CHECKING:  # static proof (mypy) that the simulator implements the edge's seam
    _transport: type[BleTransport] = SimulatedRadio
    _link: type[BleLink] = SimulatedLink
