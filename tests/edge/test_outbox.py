from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.outbox import DeadLetter, Outbox, OutboxFull, OutboxRow
from tests.edge.util import reading
from wire import contract


def _size(key: str, kind: str = "spot") -> int:
    return len(contract.encode(reading(key, kind)))


def _keys(box: Outbox) -> list[str]:
    return [r.key for r in box.pending(10_000)]


def test_pragmas_wal_and_synchronous_full(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert (box.pragma("journal_mode"), box.pragma("synchronous")) == ("wal", "2")  # 2 = FULL
    box.close()


def test_add_dedups_and_batches_oldest_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.add([reading("a"), reading("b"), reading("c")]) == 3
    assert box.add([reading("b"), reading("d")]) == 1  # replayed "b" ignored
    assert box.stats() == contract.OutboxState(
        pending=4, bytes=sum(_size(k) for k in "abcd"), dropped_continuous=0, full=False
    )
    batch = box.pending(2)
    assert batch == [
        OutboxRow(1, "a", contract.encode(reading("a"))),
        OutboxRow(2, "b", contract.encode(reading("b"))),
    ]
    box.mark_in_flight([r.seq for r in batch], "m1")
    assert box.in_flight("m1") == ["a", "b"]
    assert _keys(box) == ["c", "d"]  # in-flight rows are not handed out again
    assert [r.key for r in box.pending(10, after=3)] == ["d"]
    assert [r.key for r in box.pending(10, upto=3)] == ["c"]
    assert box.requeue("m1") == 2
    assert _keys(box) == ["a", "b", "c", "d"]
    box.mark_in_flight([1, 3], "m2")
    assert box.requeue() == 2
    assert box.delete(["a", "c", "zzz"]) == 2
    assert _keys(box) == ["b", "d"]
    assert box.stats().pending == 2
    assert box.stats().bytes == _size("b") + _size("d")
    assert box.max_seq() == box.pending(10)[-1].seq  # "d" (an ignored insert may burn a seq)
    box.close()


def test_pending_respects_byte_budget_but_returns_at_least_one(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add([reading(k) for k in "abc"])
    one = _size("a")
    assert [r.key for r in box.pending(10, max_bytes=2 * one)] == ["a", "b"]
    assert [r.key for r in box.pending(10, max_bytes=1)] == ["a"]
    box.close()


def test_receipt_rejections_go_to_dead_letters(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add([reading("a"), reading("b"), reading("c")])
    assert box.apply_receipt(["a"], [("b", "mdc unknown"), ("nope", "x")]) == 2
    assert _keys(box) == ["c"]
    [dl] = box.dead_letters()
    assert dl == DeadLetter(
        id=1,
        at=dl.at,
        device="AA:BB:CC:DD:EE:01",
        source="gateway",
        field=None,
        offset=None,
        reason="mdc unknown",
        key="b",
        raw=contract.encode(reading("b")),
    )
    box.dead_letter(b"\x01\x02", "truncated", device="d", source="2a35", field="flags", offset=0)
    assert box.dead_letters()[1] == DeadLetter(
        id=2,
        at=box.dead_letters()[1].at,
        device="d",
        source="2a35",
        field="flags",
        offset=0,
        reason="truncated",
        key=None,
        raw=b"\x01\x02",
    )
    box.close()


def test_soft_limit_drops_oldest_continuous_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_rows=10, max_bytes=10**9, soft_fraction=0.5)  # soft 5
    box.add([reading("s1"), reading("s2")])
    for i in range(6):
        box.add([reading(f"c{i}", "continuous")])
    # 8 rows > soft 5: the 3 oldest continuous samples went, spot readings stay
    assert _keys(box) == ["s1", "s2", "c3", "c4", "c5"]
    assert box.stats().dropped_continuous == 3
    assert box.stats().pending == 5
    # in-flight continuous rows are not dropped
    box.mark_in_flight([r.seq for r in box.pending(10) if r.key == "c3"], "m")
    box.add([reading("c6", "continuous")])
    assert _keys(box) == ["s1", "s2", "c5", "c6"] and box.in_flight("m") == ["c3"]
    assert box.stats().dropped_continuous == 4
    box.close()
    again = Outbox(tmp_path / "o.db", max_rows=10, max_bytes=10**9, soft_fraction=0.5)
    assert again.stats() == contract.OutboxState(
        pending=5,
        bytes=sum(
            _size(k, "spot" if k[0] == "s" else "continuous")
            for k in ["s1", "s2", "c3", "c5", "c6"]
        ),
        dropped_continuous=4,
        full=False,
    )
    again.close()


def test_hard_limit_refuses_spot_after_dropping_continuous(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_rows=4, max_bytes=10**9, soft_fraction=1.0)
    box.add([reading("s1"), reading("c1", "continuous"), reading("c2", "continuous")])
    box.add([reading("s2")])
    assert _keys(box) == ["s1", "c1", "c2", "s2"]
    box.add([reading("s3")])  # full: the oldest continuous sample makes room
    assert _keys(box) == ["s1", "c2", "s2", "s3"]
    assert box.stats().dropped_continuous == 1
    box.add([reading("s4")])
    assert _keys(box) == ["s1", "s2", "s3", "s4"]
    assert box.stats().full
    with pytest.raises(OutboxFull):
        box.add([reading("s5")], state={"racp.last_seq.x": "9"})
    # atomic: nothing of the refused transaction stored, state untouched
    assert _keys(box) == ["s1", "s2", "s3", "s4"]
    assert box.get_state("racp.last_seq.x") is None
    # a continuous sample at the hard limit is dropped (counted), never an error
    assert box.add([reading("c3", "continuous")]) == 1
    assert _keys(box) == ["s1", "s2", "s3", "s4"]
    assert box.stats().dropped_continuous == 3
    # a replay of a stored spot reading is not refused: it is not new
    assert box.add([reading("s1")]) == 0
    box.close()


def test_hard_limit_by_bytes(tmp_path: Path) -> None:
    one = _size("s1")
    box = Outbox(tmp_path / "o.db", max_rows=100, max_bytes=2 * one + 1, soft_fraction=1.0)
    box.add([reading("s1"), reading("s2")])
    with pytest.raises(OutboxFull):
        box.add([reading("s3")])
    assert _keys(box) == ["s1", "s2"]
    box.close()


def test_state_table(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.get_state("k") is None
    box.set_state("k", "1")
    assert box.add([reading("a")], state={"k": "2", "j": "x"}) == 1
    assert (box.get_state("k"), box.get_state("j")) == ("2", "x")
    assert box.add([], state={"k": "3"}) == 0
    box.close()
    assert Outbox(tmp_path / "o.db").get_state("k") == "3"


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    """A writer is SIGKILLed mid-stream: every add it reported as committed is there."""
    db = tmp_path / "o.db"
    script = textwrap.dedent(
        f"""
        import sys
        from edge.outbox import Outbox
        from tests.edge.util import reading
        box = Outbox({str(db)!r})
        i = 0
        while True:
            box.add([reading(f"k{{i}}"), reading(f"k{{i}}b", "continuous")])
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.stdout is not None
    reported = -1
    while reported < 30:
        line = proc.stdout.readline()
        assert line, "writer died"
        reported = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(db)
    keys = set(_keys(box))
    assert {f"k{i}" for i in range(reported + 1)} <= keys
    assert {f"k{i}b" for i in range(reported + 1)} <= keys
    # every transaction is whole: both rows of an add or neither
    assert {k for k in keys if not k.endswith("b")} == {k[:-1] for k in keys if k.endswith("b")}
    assert box.stats().pending == len(keys)
    box.close()


def test_outbox_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from edge.outbox import Outbox, OutboxPermissionError

    old = os.umask(0o022)
    try:
        ob = Outbox(tmp_path / "state" / "outbox.sqlite")
        ob.close()
        # A loose pre-existing file and directory of ours are tightened on open.
        os.chmod(tmp_path / "state", 0o755)
        os.chmod(tmp_path / "state" / "outbox.sqlite", 0o644)
        ob = Outbox(tmp_path / "state" / "outbox.sqlite")
        files = sorted((tmp_path / "state").iterdir())
        assert {f.name for f in files} >= {"outbox.sqlite", "outbox.sqlite-wal"}
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        ob.close()
        # A shared sticky directory (like /tmp) is refused, not chmod-ed.
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chmod(shared, 0o1777)
        with pytest.raises(OutboxPermissionError, match="private directory"):
            Outbox(shared / "outbox.sqlite")
    finally:
        os.umask(old)
