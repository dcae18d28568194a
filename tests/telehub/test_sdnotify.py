"""sd_notify and the watchdog, with a real unix datagram socket as $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telehub import sdnotify


class Receiver:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()

    def watchdogs(self, start: float, end: float) -> int:
        return sum(1 for t, m in self.got if m == "WATCHDOG=1" and start <= t <= end)


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    path = tmp_path / "notify.sock"
    r = Receiver(path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2 → fed every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield r
    r.close()


def test_watchdog_is_fed_from_the_loop_and_not_when_the_loop_is_blocked(
    receiver: Receiver,
) -> None:
    marks: dict[str, float] = {}

    async def main() -> None:
        stop = asyncio.Event()
        dog = asyncio.create_task(sdnotify.feed_watchdog(stop))
        marks["start"] = time.monotonic()
        await asyncio.sleep(0.6)
        marks["block"] = time.monotonic()
        time.sleep(1.0)  # a stuck coroutine: the loop cannot run the feeder
        marks["unblock"] = time.monotonic()
        await asyncio.sleep(0.5)
        marks["end"] = time.monotonic()
        stop.set()
        await asyncio.wait_for(dog, 2)

    asyncio.run(main())
    time.sleep(0.2)
    assert receiver.watchdogs(marks["start"], marks["block"]) >= 4
    # Nothing arrives while the loop is blocked (a small margin for the datagram in flight) ...
    assert receiver.watchdogs(marks["block"] + 0.05, marks["unblock"]) == 0
    # ... and feeding resumes once it runs again.
    assert receiver.watchdogs(marks["unblock"], marks["end"] + 0.1) >= 3


def test_the_cli_runner_says_ready_and_stopping(receiver: Receiver) -> None:
    from telehub.cli import _run_until_signal

    async def service(stop: asyncio.Event) -> int:
        await asyncio.sleep(0.35)
        return 0

    assert _run_until_signal(service) == 0
    time.sleep(0.2)
    states = [m for _, m in receiver.got]
    assert states[0] == "READY=1" and states[-1] == "STOPPING=1"
    assert states.count("WATCHDOG=1") >= 2


def test_no_socket_no_watchdog_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    monkeypatch.delenv("WATCHDOG_PID")
    assert sdnotify.watchdog_interval() is None
