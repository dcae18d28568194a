"""The peripheral side of the simulated radio: GATT server, advertising, notify/indicate, links.

A :class:`Peripheral` owns its GATT table and at most one :class:`Connection` (like the real
devices, which accept a single central). Device models subclass it and override the hooks
(:meth:`Peripheral.on_connect`, :meth:`Peripheral.on_disconnect`, :meth:`Peripheral.on_subscribe`);
work that lasts (an upload, a stream) runs in connection tasks started with
:meth:`Peripheral.spawn`, which end when the link ends.

Delivery semantics (the ones ``edge.ble.transport`` documents):

* :meth:`Peripheral.notify` hands the bytes to the central's handler and waits for it to return
  (so tests are deterministic); the data counts as sent even if the link drops meanwhile.
* :meth:`Peripheral.indicate` returns True only when the central's handler has *returned* while
  the link was still up. If the link drops first, the indication is unconfirmed (False) and the
  device must keep the record. A handler that raises is never confirmed: the real peripheral would
  wait for the ATT timeout and drop the link; the simulator drops it at once.
  One indication is outstanding per link at a time (ATT rule).

The central's handler runs in its own task: cancelling a device task never cancels edge code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from edge.ble.transport import Advertisement, NotifyHandler, normalize_uuid
from simulators.ble.gatt import Characteristic, Prop, Service
from simulators.clock import SimTime

if TYPE_CHECKING:
    from simulators.ble.radio import SimulatedLink, SimulatedRadio

log = logging.getLogger(__name__)

DEFAULT_MTU = 23  # ATT_MTU without an exchange: 20 octets of value per notification


class Connection:
    """One live link between the central (a :class:`SimulatedLink`) and a peripheral."""

    def __init__(self, peripheral: Peripheral, link: SimulatedLink) -> None:
        self.peripheral = peripheral
        self.link = link
        self.subscriptions: dict[str, NotifyHandler] = {}
        self.closed = asyncio.Event()
        self.reason: str | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.indication_lock = asyncio.Lock()
        self.changed = asyncio.Event()  # pulsed on every CCCD change and every write
        self.activity = 0  # count of CCCD changes and writes (idle timers watch it)

    def touch(self) -> None:
        """The central did something (CCCD change, write): wake waiters."""
        self.activity += 1
        self.changed.set()

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def close(self, reason: str) -> None:
        """End the link (either side, or the radio). Idempotent; cancels the device's tasks."""
        if self.closed.is_set():
            return
        self.reason = reason
        self.closed.set()
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        self.subscriptions.clear()
        self.peripheral._detach(self, reason)


class Peripheral:
    """A simulated BLE peripheral. Subclass it to give it behaviour."""

    def __init__(
        self,
        address: str,
        name: str | None,
        services: Sequence[Service],
        *,
        world: SimTime | None = None,
        advertised_services: Sequence[str] | None = None,
        manufacturer_data: dict[int, bytes] | None = None,
        rssi: int = -60,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        self.address = address.upper()
        self.name = name
        self.services: tuple[Service, ...] = tuple(services)
        self.world = world if world is not None else SimTime()
        self.advertised_services = tuple(
            normalize_uuid(u)
            for u in (advertised_services if advertised_services is not None else [])
        )
        self.manufacturer_data = dict(manufacturer_data or {})
        self.rssi = rssi
        self.mtu = mtu
        self.in_range = True
        self.connection: Connection | None = None
        self.connections = 0  # links accepted so far
        self._advertising = False
        self._connectable = asyncio.Event()
        self._chars: dict[str, Characteristic] = {
            ch.uuid: ch for svc in self.services for ch in svc.characteristics
        }
        self._radio: SimulatedRadio | None = None

    # -- GATT table -------------------------------------------------------------------------------
    def characteristic(self, uuid: str) -> Characteristic:
        try:
            return self._chars[normalize_uuid(uuid)]
        except KeyError:
            raise KeyError(f"{self.address} has no characteristic {uuid}") from None

    def has_characteristic(self, uuid: str) -> bool:
        return normalize_uuid(uuid) in self._chars

    # -- advertising ------------------------------------------------------------------------------
    @property
    def advertising(self) -> bool:
        return self._advertising and self.in_range and self.connection is None

    def start_advertising(self) -> None:
        if not self._advertising:
            log.debug("%s advertising", self.address)
        self._advertising = True
        self._update()

    def stop_advertising(self) -> None:
        self._advertising = False
        self._update()

    def set_in_range(self, in_range: bool) -> None:
        """Move the device out of (or back into) radio range; out of range drops the link."""
        self.in_range = in_range
        if not in_range and self.connection is not None:
            self.connection.close("out of range")
        self._update()

    def advertisement(self) -> Advertisement:
        return Advertisement(
            address=self.address,
            name=self.name,
            service_uuids=self.advertised_services,
            rssi=self.rssi,
            manufacturer_data=dict(self.manufacturer_data),
        )

    def _update(self) -> None:
        if self.advertising:
            self._connectable.set()
            if self._radio is not None:
                self._radio._advertised(self)
        else:
            self._connectable.clear()

    async def wait_connectable(self) -> None:
        await self._connectable.wait()

    # -- connection -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.is_open

    def _attach(self, conn: Connection) -> None:
        self.connection = conn
        self.connections += 1
        self._update()
        log.debug("%s connected", self.address)
        self.on_connect()

    def _detach(self, conn: Connection, reason: str) -> None:
        if self.connection is conn:
            self.connection = None
        log.debug("%s disconnected (%s)", self.address, reason)
        self.on_disconnect(reason)
        self._update()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` for the lifetime of the current connection (cancelled when it ends)."""
        conn = self.connection
        if conn is None or not conn.is_open:
            coro.close()
            raise RuntimeError(f"{self.address}: spawn without a connection")
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.address}:{name}")
        conn.tasks.add(task)
        task.add_done_callback(self._task_done(conn))
        return task

    def _task_done(self, conn: Connection) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            conn.tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                # A device bug: surface it loudly and end the link, as a crashed firmware would.
                exc = task.exception()
                log.error("%s task %s failed", self.address, task.get_name(), exc_info=exc)
                conn.close("device error")

        return done

    async def disconnect(self, reason: str = "peripheral") -> None:
        """Peripheral-initiated disconnect."""
        if self.connection is not None:
            self.connection.close(reason)
        await asyncio.sleep(0)

    def is_subscribed(self, uuid: str) -> bool:
        conn = self.connection
        return conn is not None and conn.is_open and normalize_uuid(uuid) in conn.subscriptions

    async def wait_until(self, predicate: Callable[[], bool], sim_timeout: float) -> bool:
        """Wait (simulated seconds) until ``predicate()`` holds after a CCCD change or a write.

        False when the time runs out or the link ends first.
        """
        conn = self.connection
        if conn is None:
            return False
        try:
            async with asyncio.timeout(self.world.real(sim_timeout)):
                while not predicate():
                    if not conn.is_open:
                        return False
                    conn.changed.clear()
                    closed = asyncio.ensure_future(conn.closed.wait())
                    changed = asyncio.ensure_future(conn.changed.wait())
                    try:
                        await asyncio.wait({closed, changed}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        closed.cancel()
                        changed.cancel()
        except TimeoutError:
            return False
        return conn.is_open

    async def wait_subscribed(self, uuids: Sequence[str], sim_timeout: float) -> bool:
        """Wait (simulated seconds) until the central subscribed to all ``uuids``."""
        return await self.wait_until(lambda: all(self.is_subscribed(u) for u in uuids), sim_timeout)

    # -- hooks for device models ----------------------------------------------------------------
    def on_connect(self) -> None:
        """A central connected (subclasses spawn their session here)."""

    def on_disconnect(self, reason: str) -> None:
        """The link ended (either side)."""

    def on_subscribe(self, uuid: str, enabled: bool) -> None:
        """The central enabled/disabled notifications or indications of ``uuid``."""

    # -- sending ----------------------------------------------------------------------------------
    def _check(self, uuid: str, data: bytes, prop: Prop) -> str:
        ch = self.characteristic(uuid)
        if not ch.props & prop:
            raise ValueError(f"{ch.uuid} does not have the {prop} property")
        if len(data) > self.mtu - 3:
            raise ValueError(f"{len(data)} octets exceed ATT_MTU {self.mtu} - 3")
        return ch.uuid

    def _deliver(self, conn: Connection, handler: NotifyHandler, data: bytes) -> asyncio.Task[None]:
        radio = conn.link.radio
        return radio._run_central(handler, bytes(data), self.address)

    async def notify(self, uuid: str, data: bytes) -> bool:
        """Send a notification; True if the central was subscribed (it then got the bytes)."""
        key = self._check(uuid, data, Prop.NOTIFY)
        conn = self.connection
        if conn is None or not conn.is_open:
            return False
        handler = conn.subscriptions.get(key)
        if handler is None:
            return False
        task = self._deliver(conn, handler, data)
        await asyncio.wait({task}, timeout=conn.link.radio.att_timeout)
        return True

    async def indicate(self, uuid: str, data: bytes, *, cut_link: bool = False) -> bool:
        """Send an indication; True only when the central confirmed it (handler returned).

        ``cut_link`` is a fault: the link drops after the central received the bytes but before it
        confirmed them, so the record is NOT delivered from the device's point of view.
        """
        key = self._check(uuid, data, Prop.INDICATE)
        conn = self.connection
        if conn is None or not conn.is_open:
            return False
        async with conn.indication_lock:
            handler = conn.subscriptions.get(key)
            if handler is None or not conn.is_open:
                return False
            task = self._deliver(conn, handler, data)
            if cut_link:
                await asyncio.sleep(0)  # the central starts handling the bytes ...
                conn.close("link lost before confirmation")  # ... and the link drops
                return False
            closed = asyncio.ensure_future(conn.closed.wait())
            try:
                done, _ = await asyncio.wait(
                    {task, closed},
                    timeout=conn.link.radio.att_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                closed.cancel()
            if task in done and conn.is_open:
                if task.cancelled() or task.exception() is not None:
                    conn.close("indication not confirmed (central handler failed)")
                    return False
                return True
            if conn.is_open:  # the central did not confirm within the ATT timeout
                conn.close("ATT transaction timeout")
            return False
