"""A serial device behind a pseudo-terminal: the edge opens :attr:`PtyDevice.port` with pyserial.

``os.openpty()`` gives a master (the device's end) and a slave (``/dev/pts/N``, the "USB serial
port"). The slave is put in raw mode at once so that no line discipline touches the bytes the
device writes before the edge opens the port (pyserial sets raw mode again when it opens it).
:attr:`PtyDevice.port` is a stable symlink (``<dir>/ttyUSB0``) to the current slave, so that
:meth:`PtyDevice.replug` can give the edge the same path back, as udev does for a real adapter.

Timing: the device writes the units (frames/packets) that are due on a drift-free schedule at
``rate`` units per simulated second, checking every few milliseconds. When nobody reads, the
kernel buffer fills; bytes that do not fit are dropped and counted (a UART does not wait either).

Faults (:class:`~simulators.faults.SerialFaults`): garbage before every n-th unit, an unplug after
n units (both here); bad checksum / bad sync / invalid values per protocol (subclasses).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import struct
import tempfile
import termios
import tty
from pathlib import Path

from simulators.clock import SimTime
from simulators.faults import SerialFaults

log = logging.getLogger(__name__)

TICK = 0.01  # real seconds between write checks
MAX_PENDING = 4096  # octets kept when the kernel buffer is full (older ones are dropped)
MAX_BURST = 10.0  # at most this many simulated seconds of units per write (after a stall)
DRAIN_TIMEOUT = 1.0  # real seconds an unplug fault waits for the host to read what was sent


class PtyDevice:
    """Base class: subclasses set ``rate`` and implement :meth:`unit` (and maybe ``on_input``)."""

    rate: float = 1.0  # units per simulated second

    def __init__(self, *, world: SimTime | None = None, faults: SerialFaults | None = None) -> None:
        self.world = world if world is not None else SimTime()
        self.faults = faults if faults is not None else SerialFaults()
        self.units = 0  # units written since start (the fault ordinal)
        self.dropped = 0  # octets dropped because nobody read them
        self.input = bytearray()  # what the host wrote to the device (bounded)
        self._dir = Path(tempfile.mkdtemp(prefix="telehub-sim-"))
        self.port = str(self._dir / "ttyUSB0")
        self._master: int | None = None
        self._slave: int | None = None
        self.pty_path: str | None = None
        self._raw_cflag = 0
        self._task: asyncio.Task[None] | None = None
        self._pending = bytearray()
        self.plugged = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._raw_cflag = termios.tcgetattr(slave)[2]
        self.pty_path = os.ttyname(slave)
        link = Path(self.port)
        link.unlink(missing_ok=True)
        link.symlink_to(self.pty_path)
        asyncio.get_running_loop().add_reader(master, self._readable)
        self.plugged.set()

    async def start(self) -> None:
        """Plug the device in and start transmitting."""
        if self._task is not None:
            return
        self._open_pty()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pty:{self.port}")

    def unplug(self) -> None:
        """Pull the cable: the pty closes (the edge's reads fail), the port path disappears."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        self._close_pty()

    async def replug(self) -> None:
        """Plug the cable back in: a new pty behind the same :attr:`port` path."""
        self.unplug()
        await self.start()

    async def aclose(self) -> None:
        task = self._task
        self.unplug()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        shutil.rmtree(self._dir, ignore_errors=True)

    def _close_pty(self) -> None:
        self.plugged.clear()
        if self._master is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        self._pending.clear()
        Path(self.port).unlink(missing_ok=True)

    def _keep_line_raw(self) -> None:
        """Put the line's control flags (parity, stop bits) back as the device opened them.

        A pty has no line: the settings the edge makes (the Contec's 8O1) change nothing on the
        wire, but they stay on the pty, which this device keeps open, and some kernels then
        refuse the same settings (EINVAL) when the edge opens the port again. A real adapter
        starts from its defaults on every open; this does the same for the next open.
        """
        if self._slave is None:
            return
        with contextlib.suppress(termios.error, OSError):
            attrs = termios.tcgetattr(self._slave)
            if attrs[2] != self._raw_cflag:
                attrs[2] = self._raw_cflag
                termios.tcsetattr(self._slave, termios.TCSANOW, attrs)

    # -- I/O ------------------------------------------------------------------------------------
    def unit(self, i: int) -> bytes:
        """The bytes of unit ``i`` (protocol faults applied)."""
        raise NotImplementedError

    def on_input(self, data: bytes) -> None:
        """The host wrote ``data`` to the device (commands)."""

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave open any more; nothing to read
            return
        if data:
            self.input += data
            del self.input[:-MAX_PENDING]
            self.on_input(data)

    def inject(self, data: bytes) -> None:
        """Write raw octets now (garbage, a reply to a command)."""
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        if self._master is None or not self._pending:
            return
        try:
            n = os.write(self._master, self._pending)
        except BlockingIOError:
            n = 0
        except OSError as e:  # the pty went away under us
            log.info("pty write failed: %s", e.strerror)
            n = len(self._pending)
        del self._pending[:n]
        if len(self._pending) > MAX_PENDING:
            excess = len(self._pending) - MAX_PENDING
            del self._pending[:excess]
            self.dropped += excess

    def _unread(self) -> int:
        """Octets written but not yet read by the host (pending here + in the slave's queue)."""
        if self._slave is None:
            return 0
        queued = struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        return len(self._pending) + int(queued)

    async def _drain(self, timeout: float) -> None:
        """Wait (bounded) until the host has read everything written: then the cable goes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._unread() and loop.time() < deadline:
            self._flush()
            await asyncio.sleep(TICK)

    def transmitting(self) -> bool:
        """Whether the device sends units now (DF8 waits for its format command)."""
        return True

    async def _run(self) -> None:
        start = self.world.elapsed()
        written = 0  # schedule slots used since start
        while True:
            due = int((self.world.elapsed() - start) * self.rate)
            if due - written > self.rate * MAX_BURST:
                written = due - int(self.rate * MAX_BURST)
            chunk = bytearray()
            while written < due:
                written += 1
                if not self.transmitting():
                    continue
                i = self.units
                if SerialFaults.hits(self.faults.garbage_every, i):
                    chunk += self.faults.garbage
                chunk += self.unit(i)
                self.units += 1
                if self.faults.unplug_after is not None and self.units >= self.faults.unplug_after:
                    self._pending += chunk
                    await self._drain(DRAIN_TIMEOUT)
                    log.info("%s: fault: unplugged after %d units", self.port, self.units)
                    self._task = None
                    self._close_pty()
                    return
            if chunk:
                self._pending += chunk
                self._keep_line_raw()
            self._flush()
            await asyncio.sleep(TICK)
