"""The durable outbox: every reading is committed here before anything else happens to it.

SQLite in WAL mode with ``synchronous=FULL``: a committed transaction survives a power cut (the WAL
is fsynced on every commit). A reading leaves the outbox only when the gateway's receipt says it is
stored (or a duplicate, or rejected for good); publishing marks rows *in flight* with the MQTT
message id, and a reconnect or a receipt timeout puts them back.

Bounded, never silently:

* **soft limit** (``outbox_soft_fraction`` of the hard limits): continuous samples are dropped,
  oldest first, and counted (``OutboxState.dropped_continuous``, reported in the hub status);
* **hard limit** (``outbox_max_rows`` / ``outbox_max_bytes``): ``add`` refuses spot readings with
  :class:`OutboxFull` (after dropping whatever continuous samples it could). The device session then
  does not confirm/complete the transfer, so the device keeps the record.

Also here: a small key/value ``state`` table (RACP last sequence per device, counters) and a local
``dead_letters`` table (undecodable records, readings the gateway rejected) for support.

The API is synchronous: each call is one short transaction on the event-loop thread (the fsync is
the cost; the hub has a handful of devices at <= 1 reading/s each).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wire import contract

log = logging.getLogger(__name__)

DEAD_LETTER_MAX_ROWS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_at REAL    NOT NULL,
    msg_id     TEXT,
    sent_at    REAL,
    attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox (kind, seq);
CREATE INDEX IF NOT EXISTS outbox_msg ON outbox (msg_id) WHERE msg_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         REAL    NOT NULL,
    device     TEXT,
    source     TEXT,
    field      TEXT,
    "offset"   INTEGER,
    reason     TEXT    NOT NULL,
    key        TEXT,
    raw        BLOB    NOT NULL
);
"""

_DROPPED = "outbox.dropped_continuous"


class OutboxPermissionError(Exception):
    """The outbox's directory is readable by others and cannot safely be tightened."""


def _private_dir(directory: Path) -> None:
    """Make ``directory`` exist with mode 0700 (patient readings live in it)."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
        return
    st = directory.stat()
    if st.st_mode & 0o077 == 0:
        return
    if st.st_uid != os.geteuid() or st.st_mode & stat.S_ISVTX:
        raise OutboxPermissionError(
            f"outbox directory {directory} is accessible to other users and is not ours to "
            "tighten (shared or sticky); put the outbox in a private directory"
        )
    log.warning("outbox directory %s was mode %o; tightened to 0700", directory, st.st_mode & 0o777)
    os.chmod(directory, 0o700)


def _private_file(path: Path) -> None:
    """Create ``path`` as 0600 before SQLite opens it (its -wal/-shm files copy this mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            os.chmod(side, 0o600)


class OutboxFull(Exception):
    """The hard limit is reached: a spot reading cannot be stored (the device must keep it)."""


#: The outbox kind of a held record (``contract.HeldRecord``); readings are "spot"/"continuous".
HELD = "held"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    key: str
    payload: bytes  # the encoded contract.Reading (or contract.HeldRecord when kind is HELD)
    kind: str = "spot"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    at: float
    device: str | None
    source: str | None
    field: str | None
    offset: int | None
    reason: str
    key: str | None
    raw: bytes


class Outbox:
    """One SQLite database file (outbox + state + dead letters)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 200_000,
        max_bytes: int = 64_000_000,
        soft_fraction: float = 0.8,
    ) -> None:
        self.path = Path(path)
        _private_dir(self.path.parent)
        _private_file(self.path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.soft_rows = int(max_rows * soft_fraction)
        self.soft_bytes = int(max_bytes * soft_fraction)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"outbox {self.path}: cannot enable WAL (journal_mode={mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        rows, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._rows = int(rows)
        self._bytes = int(size)
        self._dropped = int(self.get_state(_DROPPED) or 0)

    def close(self) -> None:
        self._db.close()

    # -- pragmas (for tests and the status page) ------------------------------------------------
    def pragma(self, name: str) -> str:
        return str(self._db.execute(f"PRAGMA {name}").fetchone()[0])

    # -- writing --------------------------------------------------------------------------------
    def add(
        self, readings: Sequence[contract.Reading], *, state: Mapping[str, str] | None = None
    ) -> int:
        """Store readings (and optional state updates) in one transaction; return how many were
        new (a key already present is ignored: device replays dedup here too).

        Raises :class:`OutboxFull` (nothing stored, state not updated) when a spot reading does not
        fit under the hard limit even after dropping continuous samples.
        """
        items = [(r.key, r.kind, r.device, contract.encode(r)) for r in readings]
        return self._add(items, state)

    def add_held(self, records: Sequence[contract.HeldRecord]) -> int:
        """Store records that belong to no patient (kind ``held``): they leave the hub like
        readings, after the gateway's receipt, and are never dropped as continuous samples are.
        Raises :class:`OutboxFull` as ``add`` does for a spot reading."""
        return self._add([(h.key, HELD, h.device, contract.encode(h)) for h in records], None)

    def _add(
        self, items: list[tuple[str, str, str, bytes]], state: Mapping[str, str] | None
    ) -> int:
        now = time.time()
        rows, size, dropped = self._rows, self._bytes, self._dropped
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            new = 0
            for key, kind, device, payload in items:
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (key, kind, device, payload, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, kind, device, payload, now),
                )
                if cur.rowcount != 1:
                    continue
                new += 1
                rows += 1
                size += len(payload)
                if kind != "continuous" and (rows > self.max_rows or size > self.max_bytes):
                    n, b = self._drop_continuous(rows - self.max_rows, size - self.max_bytes)
                    rows, size, dropped = rows - n, size - b, dropped + n
                    if rows > self.max_rows or size > self.max_bytes:
                        raise OutboxFull(
                            f"outbox full ({rows - 1} rows, {size - len(payload)} bytes)"
                        )
            if rows > self.soft_rows or size > self.soft_bytes:
                n, b = self._drop_continuous(rows - self.soft_rows, size - self.soft_bytes)
                rows, size, dropped = rows - n, size - b, dropped + n
            if dropped != self._dropped:
                self._put_state(_DROPPED, str(dropped))
            for name, value in (state or {}).items():
                self._put_state(name, value)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if dropped != self._dropped:
            log.warning(
                "outbox over soft limit: dropped %d continuous samples (total %d)",
                dropped - self._dropped,
                dropped,
            )
        self._rows, self._bytes, self._dropped = rows, size, dropped
        return new

    def _drop_continuous(self, excess_rows: int, excess_bytes: int) -> tuple[int, int]:
        """Delete the oldest continuous rows not in flight until both excesses are <= 0.
        Returns (rows, bytes) deleted. Runs inside the caller's transaction."""
        n = b = 0
        cutoff: int | None = None
        cur = self._db.execute(
            "SELECT seq, length(payload) FROM outbox WHERE kind = 'continuous'"
            " AND msg_id IS NULL ORDER BY seq"
        )
        for seq, length in cur:
            if n >= excess_rows and b >= excess_bytes:
                break
            n += 1
            b += int(length)
            cutoff = int(seq)
        cur.close()
        if cutoff is not None:
            self._db.execute(
                "DELETE FROM outbox WHERE kind = 'continuous' AND msg_id IS NULL AND seq <= ?",
                (cutoff,),
            )
        return n, b

    # -- publishing -----------------------------------------------------------------------------
    def pending(
        self,
        limit: int,
        *,
        after: int = 0,
        upto: int | None = None,
        max_bytes: int | None = None,
    ) -> list[OutboxRow]:
        """The oldest rows not in flight with ``after < seq <= upto``: at most ``limit`` rows and
        (if given) ``max_bytes`` of payload, but always at least one row if any is pending."""
        sql = "SELECT seq, key, payload, kind FROM outbox WHERE msg_id IS NULL AND seq > ?"
        args: list[int] = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        out: list[OutboxRow] = []
        total = 0
        for seq, key, payload, kind in self._db.execute(sql, args):
            total += len(payload)
            if max_bytes is not None and out and total > max_bytes:
                break
            out.append(OutboxRow(int(seq), str(key), bytes(payload), str(kind)))
        return out

    def mark_in_flight(self, seqs: Iterable[int], msg_id: str) -> None:
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "UPDATE outbox SET msg_id = ?, sent_at = ?, attempts = attempts + 1 WHERE seq = ?",
                [(msg_id, now, s) for s in seqs],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def in_flight(self, msg_id: str) -> list[str]:
        """Keys currently in flight under ``msg_id``."""
        return [
            str(k)
            for (k,) in self._db.execute(
                "SELECT key FROM outbox WHERE msg_id = ? ORDER BY seq", (msg_id,)
            )
        ]

    def requeue(self, msg_id: str | None = None) -> int:
        """Put in-flight rows (of one message, or all) back in the queue; return how many."""
        if msg_id is None:
            cur = self._db.execute(
                "UPDATE outbox SET msg_id = NULL, sent_at = NULL WHERE msg_id IS NOT NULL"
            )
        else:
            cur = self._db.execute(
                "UPDATE outbox SET msg_id = NULL, sent_at = NULL WHERE msg_id = ?", (msg_id,)
            )
        return cur.rowcount

    def delete(self, keys: Iterable[str]) -> int:
        """Remove rows by key (the gateway stored them); return how many were present."""
        return self.apply_receipt(keys, ())

    def apply_receipt(self, done: Iterable[str], rejected: Iterable[tuple[str, str]]) -> int:
        """One transaction: delete the ``done`` keys (stored or duplicate); move the ``rejected``
        (key, reason) rows to the dead-letter table. Returns rows removed from the outbox."""
        db = self._db
        removed = removed_bytes = 0
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for key in done:
                row = db.execute(
                    "DELETE FROM outbox WHERE key = ? RETURNING length(payload)", (key,)
                ).fetchone()
                if row is not None:
                    removed += 1
                    removed_bytes += int(row[0])
            for key, reason in rejected:
                row = db.execute(
                    "DELETE FROM outbox WHERE key = ? RETURNING device, payload", (key,)
                ).fetchone()
                if row is None:
                    continue
                removed += 1
                removed_bytes += len(row[1])
                db.execute(
                    "INSERT INTO dead_letters (at, device, source, reason, key, raw)"
                    " VALUES (?, ?, 'gateway', ?, ?, ?)",
                    (now, row[0], reason, key, row[1]),
                )
            self._trim_dead_letters()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._rows -= removed
        self._bytes -= removed_bytes
        return removed

    def max_seq(self) -> int:
        row = self._db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
        return int(row[0])

    # -- status ---------------------------------------------------------------------------------
    def stats(self) -> contract.OutboxState:
        return contract.OutboxState(
            pending=self._rows,
            bytes=self._bytes,
            dropped_continuous=self._dropped,
            full=self._rows >= self.max_rows or self._bytes >= self.max_bytes,
        )

    # -- state ----------------------------------------------------------------------------------
    def get_state(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, name: str, value: str) -> None:
        self._put_state(name, value)  # autocommit: its own transaction

    def _put_state(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO state (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- dead letters ---------------------------------------------------------------------------
    def dead_letter(
        self,
        raw: bytes,
        reason: str,
        *,
        device: str | None = None,
        source: str | None = None,
        field: str | None = None,
        offset: int | None = None,
    ) -> None:
        """Keep bytes that could not be decoded (for support); bounded, oldest trimmed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                'INSERT INTO dead_letters (at, device, source, field, "offset", reason, raw)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), device, source, field, offset, reason, bytes(raw)),
            )
            self._trim_dead_letters()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _trim_dead_letters(self) -> None:
        self._db.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
            (DEAD_LETTER_MAX_ROWS,),
        )

    def dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(
                id=int(r[0]),
                at=float(r[1]),
                device=r[2],
                source=r[3],
                field=r[4],
                offset=r[5],
                reason=str(r[6]),
                key=r[7],
                raw=bytes(r[8]),
            )
            for r in self._db.execute(
                'SELECT id, at, device, source, field, "offset", reason, key, raw'
                " FROM dead_letters ORDER BY id"
            )
        ]
