"""The durable outbox on its own: order, persistence across reopen, bounds, and bad files."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from nvr.errors import ConfigError, ExitCode, InputFileError
from nvr.mqtt.config import OutboxConfig
from nvr.mqtt.outbox import NewMessage, Outbox, outbox_path


def message(i: int, camera: str = "cam", size: int = 10) -> NewMessage:
    return NewMessage(camera, f"nvr/{camera}/face", str(i).encode().ljust(size, b" "), event_id=f"id{i}")


def test_messages_come_back_in_order_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, OutboxConfig())
    seqs = outbox.put([message(i, "a" if i % 2 else "b") for i in range(10)])
    assert seqs == sorted(seqs) and len(outbox) == 10
    outbox.delete(seqs[:3])
    outbox.close()

    reopened = Outbox(path, OutboxConfig())  # a daemon restart
    assert len(reopened) == 7 and reopened.size_bytes == 7 * (10 + len("nvr/a/face"))
    rows = reopened.pending(0, 100)
    assert [r.payload.strip() for r in rows] == [str(i).encode() for i in range(3, 10)]
    assert [r.seq for r in rows] == seqs[3:]
    assert rows[0].event_id == "id3" and rows[0].qos == 1 and not rows[0].retain
    assert [r.seq for r in reopened.pending(seqs[5], 2)] == seqs[6:8]
    reopened.delete([r.seq for r in rows])
    assert len(reopened) == 0 and reopened.size_bytes == 0
    # Sequence numbers are never reused, even once the queue was empty: order holds across restarts.
    (later,) = reopened.put([message(99)])
    assert later > seqs[-1]
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_full_outbox_drops_the_oldest_and_says_so(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", OutboxConfig(max_messages=10))
    with capture_logs() as logs:
        for i in range(25):
            outbox.put([message(i)])
    assert len(outbox) == 10 and outbox.dropped_full == 15
    assert [r.payload.strip() for r in outbox.pending(0, 100)] == [str(i).encode() for i in range(15, 25)]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and "dropped" in warnings[0]["event"] and warnings[0]["reason"] == "outbox full"
    assert len(warnings) == 1, "drops are summarised, not logged one by one"


def test_outbox_is_bounded_in_bytes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", OutboxConfig(max_bytes=64 * 1024))
    for i in range(20):
        outbox.put([message(i, size=10_000)])
    assert outbox.size_bytes <= 64 * 1024 and len(outbox) == 6 and outbox.dropped_full == 14
    with pytest.raises(ValueError, match="max_bytes"):
        outbox.put([message(0, size=70_000)])


def test_old_messages_expire(tmp_path: Path) -> None:
    now = [1000.0]
    outbox = Outbox(tmp_path / "o.db", OutboxConfig(max_age=60), clock=lambda: now[0])
    outbox.put([message(1), message(2)])
    now[0] = 1050.0
    outbox.put([message(3)])
    assert outbox.expire() == 0
    now[0] = 1070.0
    assert outbox.expire() == 2
    assert [r.payload.strip() for r in outbox.pending(0, 10)] == [b"3"] and outbox.dropped_expired == 2


def test_concurrent_writer_and_sender(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", OutboxConfig(synchronous="normal"))
    done = threading.Event()
    sent: list[int] = []

    def sender() -> None:
        last = 0
        while not done.is_set() or len(outbox):
            rows = outbox.pending(last, 50)
            if rows:
                last = rows[-1].seq
                sent.extend(int(r.payload) for r in rows)
                outbox.delete([r.seq for r in rows])

    thread = threading.Thread(target=sender)
    thread.start()
    for i in range(500):
        outbox.put([message(i)])
    done.set()
    thread.join(timeout=30)
    assert sent == list(range(500)) and len(outbox) == 0


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "outbox.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputFileError) as info:
        Outbox(bad, OutboxConfig())
    assert str(bad) in info.value.message and "\n" not in info.value.message
    assert info.value.exit_code == ExitCode.INPUT
    newer = tmp_path / "newer.sqlite3"
    sqlite3.connect(newer).execute("PRAGMA user_version=7")
    with pytest.raises(InputFileError, match="schema version 7"):
        Outbox(newer, OutboxConfig())


def test_outbox_path_defaults_to_the_state_directory(tmp_path: Path) -> None:
    assert outbox_path(OutboxConfig(), tmp_path) == tmp_path / "outbox.sqlite3"
    assert outbox_path(OutboxConfig(path=tmp_path / "x.db"), None) == tmp_path / "x.db"
    with pytest.raises(ConfigError, match=r"mqtt\.outbox\.path"):
        outbox_path(OutboxConfig(), None)


def test_one_outbox_serves_one_daemon(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, OutboxConfig())
    with pytest.raises(InputFileError, match=rf"in use by nvr process {os.getpid()}"):
        Outbox(path, OutboxConfig())
    first.close()
    Outbox(path, OutboxConfig()).close()  # free again once closed (or once its process died)
