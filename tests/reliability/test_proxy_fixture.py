"""The TCP proxy fixture relays, cuts and pauses (the chaos matrix relies on each of these)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.fix_proxy import TcpProxy, parse_target


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A threaded TCP echo server on 127.0.0.1; yields its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield port
    finally:
        stop.set()
        t.join(5)
        srv.close()


def roundtrip(port: int, data: bytes = b"ping", timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return s.recv(4096)


def answer_or_nothing(port: int) -> bytes:
    """What a new connection through ``port`` gets back for b"x" (b"" if reset or closed)."""
    try:
        return roundtrip(port, b"x", timeout=2)
    except OSError:
        return b""


def test_parse_target() -> None:
    assert parse_target("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_target("localhost:5432") == ("localhost", 5432)
    assert parse_target(("10.0.0.1", 7)) == ("10.0.0.1", 7)
    with pytest.raises(ValueError, match="has no port"):
        parse_target("mqtt://host")


def test_relays_and_cut_resets_live_connections(tcp_proxy: type[TcpProxy]) -> None:
    with echo_server() as port:
        proxy = tcp_proxy(("127.0.0.1", port))
        assert roundtrip(proxy.port) == b"ping"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"a")
            assert s.recv(10) == b"a"
            assert proxy.connections == 1
            assert proxy.cut() == 1
            # the peer sees the link die: EOF or a reset, never more data
            try:
                s.sendall(b"b")
                got = s.recv(10)
            except OSError:
                got = b""
            assert got == b""
        assert proxy.connections == 0
        assert roundtrip(proxy.port, b"again") == b"again"  # new connections work at once
        assert (proxy.accepted, proxy.cuts) == (3, 1)


def test_pause_refuses_until_resume(tcp_proxy: type[TcpProxy]) -> None:
    with echo_server() as port:
        proxy = tcp_proxy(f"127.0.0.1:{port}")
        proxy.pause()
        assert answer_or_nothing(proxy.port) == b""
        assert proxy.refused == 1
        proxy.resume()
        assert roundtrip(proxy.port) == b"ping"


def test_pause_with_hold_delivers_after_resume(tcp_proxy: type[TcpProxy]) -> None:
    with echo_server() as port:
        proxy = tcp_proxy(("127.0.0.1", port))
        proxy.pause(hold=True)
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        with s:
            s.sendall(b"held")
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(10)  # nothing answers while the link is down
            proxy.resume()
            s.settimeout(5)
            assert s.recv(10) == b"held"


def test_partition_cuts_and_refuses(tcp_proxy: type[TcpProxy]) -> None:
    with echo_server() as port:
        proxy = tcp_proxy(("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as live:
            live.sendall(b"1")
            assert live.recv(10) == b"1"
            assert proxy.partition() == 1
            assert proxy.paused
        assert answer_or_nothing(proxy.port) == b""
        proxy.resume()
        assert roundtrip(proxy.port) == b"ping"
