"""WAL checkpoints of the outbox run on their own thread: a message commit never checkpoints (one WAL sync,
not three), the WAL is still checkpointed and started over, and a writer that never pauses cannot make it
grow without end."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import nvr.mqtt.checkpoint as checkpoint
from nvr.mqtt.config import OutboxConfig
from nvr.mqtt.outbox import NewMessage, Outbox

PAGE = 4096


def page_message(k: int) -> NewMessage:
    return NewMessage("cam", "nvr/cam/face", bytes([k % 256]) * PAGE)  # a page (and a bit) per message


def wait_until(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wal_frames(path: Path) -> int:
    """Frames in the WAL, from its size (a frame is a page plus a 24-byte header; the WAL header is 32)."""
    wal = path.with_name(path.name + "-wal")
    return max(0, (wal.stat().st_size - 32) // (PAGE + 24)) if wal.exists() else 0


def test_message_commits_never_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_INTERVAL", 3600.0)  # the checkpoint thread stays out of it
    path = tmp_path / "o.db"
    outbox = Outbox(path, OutboxConfig())
    size_before = path.stat().st_size
    for k in range(1200):  # SQLite's own default would checkpoint inside the commit that passes 1000 pages
        outbox.put([page_message(k)])
    assert path.stat().st_size == size_before, "a commit copied pages into the database file"
    assert wal_frames(path) > 1200 and outbox.checkpointer.checkpoints == 0
    assert len(outbox) == 1200
    outbox.close()
    again = sqlite3.connect(path)  # closing checkpointed everything: the rows are in the database file
    assert again.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1200
    again.close()


def test_the_checkpoint_thread_checkpoints_and_the_wal_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_INTERVAL", 0.05)
    path = tmp_path / "o.db"
    outbox = Outbox(path, OutboxConfig())
    for k in range(300):
        outbox.put([page_message(k)])
    assert wait_until(outbox.checkpointer.settled)
    assert path.stat().st_size > 300 * PAGE, "the checkpoint filled the database file"
    # Once a checkpoint caught up, commits write the WAL from its start again: it stops growing.
    wal_size = path.with_name("o.db-wal").stat().st_size
    for _ in range(5):
        assert wait_until(outbox.checkpointer.settled)
        for k in range(100):
            outbox.put([page_message(k)])
    assert path.with_name("o.db-wal").stat().st_size <= wal_size + 2 * PAGE
    assert len(outbox) == 800 and outbox.checkpointer.restarts == 0
    outbox.close()


def test_a_wal_no_checkpoint_catches_up_with_is_restarted_by_the_writer_past_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When checkpoints never catch up (a writer that never pauses on a slow disk; here a reader that
    holds on to an old snapshot), the WAL grows; past the limit the writer thread restarts it itself."""
    monkeypatch.setattr(checkpoint, "CHECKPOINT_INTERVAL", 0.01)
    monkeypatch.setattr(checkpoint, "WAL_LIMIT_FRAMES", 200)
    path = tmp_path / "o.db"
    outbox = Outbox(path, OutboxConfig())
    outbox.put([page_message(0)])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM messages").fetchone()  # pins the WAL as it is now
    k = 1
    while not outbox.checkpointer.restart_due:
        assert k < 2000, "the WAL grew past its limit and no restart was asked for"
        outbox.submit([page_message(k)])
        outbox.flush()
        k += 1
    assert wal_frames(path) >= 200 and outbox.checkpointer.restarts == 0
    reader.execute("COMMIT")
    reader.close()
    with capture_logs() as logs:
        outbox.submit([page_message(k)])  # through the writer thread, which restarts the WAL after it
        outbox.flush()
        assert wait_until(lambda: outbox.checkpointer.restarts == 1)
    assert any(e["event"].startswith("outbox WAL restarted") for e in logs)
    size = path.with_name("o.db-wal").stat().st_size
    for j in range(10):  # fewer pages than the WAL holds
        outbox.put([page_message(j)])
    assert path.with_name("o.db-wal").stat().st_size == size, "the WAL is written from its start again"
    assert len(outbox) == k + 1 + 10
    outbox.close()
