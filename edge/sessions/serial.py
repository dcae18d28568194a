"""Serial session: a USB-serial (or Bluetooth SPP/RFCOMM) device on a port path.

The driver comes from the binding's ``driver`` key, else from the registry's USB VID:PID match
(exactly one serial driver must match). Line settings come from the driver's
:class:`drivers.driver.SerialParams`; the byte stream goes through the driver's framer. When the
port disappears (unplugged, EIO) or cannot be opened, the session waits (1 s doubling up to
``retry_max``) and opens it again; for a ``usb = "vid:pid"`` binding the port path is looked up
again each time (ttyUSB0 may come back as ttyUSB1).

The port is read with pyserial in non-blocking mode through the event loop (``add_reader``), not
pyserial-asyncio-fast: that library re-applies the termios settings after opening (``timeout = 0``)
and a second ``tcsetattr`` with odd parity fails with EINVAL on a pty (and on some USB-serial
drivers), so a Contec CMS50D+ (8O1) could not be opened. The port is configured once, here.

Serial devices have no clock the hub can set and no timestamps: readings carry the hub's receive
time, continuous streams are downsampled like BLE streams (:mod:`edge.sessions.common`). Serial has
no delivery confirmation either: if the outbox refuses a spot record (hard limit) it is counted and
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from drivers.driver import Driver, Framer, SerialParams
from edge.config import DeviceBinding
from edge.outbox import OutboxFull
from edge.sessions.common import DriverLookup, RecordSink, SessionEnv

log = logging.getLogger(__name__)

READ_CHUNK = 4096
OPEN_TIMEOUT = 5.0

#: Octets written after opening the port, by driver key: devices that stream only when asked.
#: Nonin DF8 (Onyx II 9560): "select data format 8" (reference §6.2; the device ACKs with 0x06,
#: which the framer discards). Belongs on the registry's Driver; kept here until it is there.
START_COMMANDS: dict[str, bytes] = {
    "nonin-df8": bytes((0x02, 0x70, 0x02, 0x02, 0x08, 0x03)),
}


@dataclass(frozen=True, slots=True)
class PortInfo:
    device: str  # /dev/ttyUSB0
    vid: int | None = None
    pid: int | None = None


PortLister = Callable[[], Iterable[PortInfo]]


def list_ports() -> list[PortInfo]:
    """The machine's serial ports with their USB ids (pyserial's ``list_ports.comports``)."""
    from serial.tools import list_ports as lp

    return [PortInfo(p.device, p.vid, p.pid) for p in lp.comports()]


class SerialConfigError(ValueError):
    """No usable driver for a serial binding."""


def resolve_serial_driver(lookup: DriverLookup, binding: DeviceBinding) -> Driver:
    if binding.driver is not None:
        try:
            d = lookup.get(binding.driver)
        except KeyError as exc:
            raise SerialConfigError(f"{binding.device_id}: {exc}") from exc
        if d.transport != "serial":
            raise SerialConfigError(f"{binding.device_id}: driver {d.key} is not a serial driver")
        return d
    ids = binding.usb_ids
    if ids is None:
        raise SerialConfigError(f'{binding.device_id}: a port binding needs driver = "..."')
    found = [d for d in lookup.match_usb(*ids) if d.transport == "serial"]
    if len(found) != 1:
        names = ", ".join(d.key for d in found) or "none"
        raise SerialConfigError(
            f'{binding.device_id}: USB {binding.usb} matches {names}: set driver = "..."'
        )
    return found[0]


def find_port(binding: DeviceBinding, ports: PortLister) -> str | None:
    if binding.port is not None:
        return binding.port
    ids = binding.usb_ids
    for p in ports():
        if ids is not None and (p.vid, p.pid) == ids:
            return p.device
    return None


async def run_serial_session(
    env: SessionEnv,
    binding: DeviceBinding,
    stop: asyncio.Event,
    *,
    ports: PortLister = list_ports,
    retry_max: float = 30.0,
) -> None:
    """Read the device until ``stop``; reopen the port whenever it goes away."""
    driver = resolve_serial_driver(env.lookup, binding)
    params = driver.serial or SerialParams(baudrate=9600)
    device = binding.device_id
    delay = 1.0
    open_failing = False
    while not stop.is_set():
        path = find_port(binding, ports)
        if path is None:
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, retry_max)
            continue
        try:
            port = SerialPort.open(path, params)
        except (OSError, ValueError, termios.error) as exc:
            env.state.count("serial.open_failed")
            # visible at the default level once per outage; the retries after it at INFO
            log.log(
                logging.INFO if open_failing else logging.WARNING,
                "%s: cannot open %s: %s",
                device,
                path,
                exc,
            )
            open_failing = True
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, retry_max)
            continue
        delay = 1.0
        open_failing = False
        env.state.count("serial.opened")
        log.info("%s: %s open (%s, %d baud)", device, path, driver.key, params.baudrate)
        framer = driver.framer() if driver.framer is not None else None
        sink = RecordSink(env, binding)
        try:
            start = START_COMMANDS.get(driver.key)
            if start is not None:
                await port.write(start, OPEN_TIMEOUT)
            end = await _pump(port, sink, driver, framer, stop)
            log.info("%s: %s ended (%s)", device, path, end)
        except (OSError, TimeoutError, termios.error) as exc:
            env.state.count("serial.lost")
            log.warning("%s: %s lost: %s", device, path, exc)
        finally:
            port.close()
        if not stop.is_set():
            await _sleep_unless(stop, delay)


class SerialPort:
    """A pyserial port read and written without blocking the event loop (POSIX fds)."""

    def __init__(self, ser: Any) -> None:
        self._ser = ser
        self._fd: int = ser.fileno()

    @classmethod
    def open(cls, path: str, params: SerialParams) -> SerialPort:
        import serial

        ser = serial.Serial(
            path,
            baudrate=params.baudrate,
            bytesize=params.bytesize,
            parity=params.parity,
            stopbits=params.stopbits,
            timeout=0,  # reads return what is there
            write_timeout=0,
            exclusive=True,
        )
        return cls(ser)

    async def read(self, size: int) -> bytes:
        """At least one octet; OSError (SerialException) when the device went away."""
        loop = asyncio.get_running_loop()
        while True:
            data: bytes = self._ser.read(size)
            if data:
                return data
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self._fd)

    async def write(self, data: bytes, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        async with asyncio.timeout(timeout):
            while view:
                try:
                    n = os.write(self._fd, view)
                except BlockingIOError:
                    n = 0
                view = view[n:]
                if view:
                    ready: asyncio.Future[None] = loop.create_future()
                    loop.add_writer(self._fd, _wake, ready)
                    try:
                        await ready
                    finally:
                        loop.remove_writer(self._fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._ser.close()


async def _pump(
    port: SerialPort,
    sink: RecordSink,
    driver: Driver,
    framer: Framer | None,
    stop: asyncio.Event,
) -> str:
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            read = asyncio.ensure_future(port.read(READ_CHUNK))
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read
                return "stopped"
            data = read.result()
            try:
                sink.handle_bytes(driver, data, framer)
            except OutboxFull:
                sink.env.state.count("serial.records_lost")
    finally:
        stopped.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
