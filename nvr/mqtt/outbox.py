"""The durable outbox: an SQLite queue (WAL) between the event pipeline and the broker.

Every event message is committed here before it is handed to the MQTT client, and deleted only when the
broker acknowledged it (PUBACK). After a broker outage or a daemon restart the sender starts again from the
oldest row, so messages go out in the order they were written (per camera, and overall) and none is lost;
one may be sent twice, which QoS 1 allows (consumers dedupe on the event id). The queue is bounded by count,
bytes and age; what it drops is counted and logged.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from nvr.errors import ConfigError, InputFileError
from nvr.mqtt.config import OutboxConfig

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, so order survives restarts
    camera TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    content_type TEXT,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_created ON messages (created);
"""
_DROP_LOG_INTERVAL = 10.0  # seconds between two warnings about dropped messages


@dataclass(frozen=True, slots=True)
class NewMessage:
    camera: str
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    content_type: str | None = None
    event_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)  # topics are ASCII (checked names): chars == bytes


@dataclass(frozen=True, slots=True)
class OutboxMessage(NewMessage):
    seq: int = 0
    created: float = 0.0


def outbox_path(config: OutboxConfig, state_dir: Path | None) -> Path:
    """The configured path, else `outbox.sqlite3` in the daemon's state directory."""
    if config.path is not None:
        return config.path.expanduser()
    if state_dir is None:
        raise ConfigError("mqtt.outbox.path is not set and there is no state directory to put the outbox in")
    return state_dir / "outbox.sqlite3"


class Outbox:
    """Thread-safe: the pipeline writes, the MQTT sender reads and deletes."""

    def __init__(self, path: Path, config: OutboxConfig, clock: Callable[[], float] = time.time) -> None:
        """Open (or create) the outbox at `path`; `config.path` is not consulted (see `outbox_path`)."""
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.path = path
        self.dropped_full = 0  # oldest messages dropped to make room
        self.dropped_expired = 0  # messages older than max_age
        self._unlogged_drops = 0
        self._last_drop_log = 0.0
        self._lock_handle = self._lock_file(path)
        try:
            self._db = self._open(path)
        except BaseException:
            self._lock_handle.close()
            raise
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM messages"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)
        if self._count:
            log.info("outbox holds messages from an earlier run", path=str(self.path), count=self._count)

    def _lock_file(self, path: Path) -> IO[str]:
        """Hold `<outbox>.lock` while open: two daemons draining one outbox would send everything twice.
        The kernel drops the lock when the process dies, however it dies."""
        lock_path = path.with_name(path.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a+")  # noqa: SIM115 (held until close())
        except OSError as exc:
            raise InputFileError(f"outbox {path}: cannot create ({exc.strerror or exc})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputFileError(f"outbox {path}: in use by {holder} (one nvr per outbox)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"nvr process {os.getpid()}")
        handle.flush()
        return handle

    def _open(self, path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, SCHEMA_VERSION):
                raise InputFileError(
                    f"outbox {path}: schema version {version} is not {SCHEMA_VERSION}"
                    " (made by another nvr version)"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._config.synchronous.upper()}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise InputFileError(f"outbox {path}: not a usable SQLite database ({exc})") from None
        except OSError as exc:
            raise InputFileError(f"outbox {path}: cannot create ({exc.strerror or exc})") from None
        return db

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, messages: Sequence[NewMessage]) -> list[int]:
        """Commit `messages` (in one transaction) and return their sequence numbers.

        Makes room first by dropping the oldest undelivered messages if the bounds require it.
        """
        size = sum(m.size for m in messages)
        if size > self._config.max_bytes:
            raise ValueError(
                f"{size} bytes of messages exceed the outbox's max_bytes {self._config.max_bytes}"
            )
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._make_room(len(messages), size)
                seqs = []
                for m in messages:
                    cursor = self._db.execute(
                        "INSERT INTO messages (camera, topic, payload, qos, retain, created, content_type,"
                        " event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (m.camera, m.topic, m.payload, m.qos, int(m.retain), now, m.content_type, m.event_id),
                    )
                    seqs.append(int(cursor.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(messages) - dropped[0]
            self._bytes += size - dropped[1]
        if dropped[0]:
            self.dropped_full += dropped[0]
            self._note_drops(dropped[0], "full")
        return seqs

    def _make_room(self, count: int, size: int) -> tuple[int, int]:
        excess_count = self._count + count - self._config.max_messages
        excess_bytes = self._bytes + size - self._config.max_bytes
        if excess_count <= 0 and excess_bytes <= 0:
            return 0, 0
        drop_seqs: list[int] = []
        freed = 0
        rows = self._db.execute("SELECT seq, LENGTH(payload) + LENGTH(topic) FROM messages ORDER BY seq")
        for seq, row_size in rows:
            if len(drop_seqs) >= excess_count and freed >= excess_bytes:
                break
            drop_seqs.append(int(seq))
            freed += int(row_size)
        self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in drop_seqs])
        return len(drop_seqs), freed

    def pending(self, after_seq: int, limit: int) -> list[OutboxMessage]:
        """The oldest messages with a sequence number above `after_seq`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, camera, topic, payload, qos, retain, created, content_type, event_id"
                " FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            OutboxMessage(
                camera=camera,
                topic=topic,
                payload=bytes(payload),
                qos=int(qos),
                retain=bool(retain),
                content_type=content_type,
                event_id=event_id,
                seq=int(seq),
                created=float(created),
            )
            for seq, camera, topic, payload, qos, retain, created, content_type, event_id in rows
        ]

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove acknowledged (or refused) messages, in one transaction."""
        if not seqs:
            return
        with self._lock:
            self._delete_committed(seqs)

    def _delete_committed(self, seqs: Sequence[int]) -> tuple[int, int]:
        """Delete rows in one transaction and update the running totals; caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            freed = self._delete_rows(seqs)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._count -= freed[0]
        self._bytes -= freed[1]
        return freed

    def _delete_rows(self, seqs: Sequence[int]) -> tuple[int, int]:
        count = size = 0
        for seq in seqs:
            row = self._db.execute(
                "DELETE FROM messages WHERE seq = ? RETURNING LENGTH(payload) + LENGTH(topic)", (seq,)
            ).fetchone()
            if row is not None:  # already gone: dropped for room while it was in flight
                count += 1
                size += int(row[0])
        return count, size

    def expire(self) -> int:
        """Drop messages older than max_age; returns how many."""
        cutoff = self._clock() - self._config.max_age
        with self._lock:
            rows = self._db.execute("SELECT seq FROM messages WHERE created < ?", (cutoff,)).fetchall()
            if not rows:
                return 0
            freed = self._delete_committed([int(r[0]) for r in rows])
        self.dropped_expired += freed[0]
        self._note_drops(freed[0], "expired")
        return freed[0]

    def _note_drops(self, count: int, reason: str) -> None:
        self._unlogged_drops += count
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "outbox dropped undelivered messages",
                path=str(self.path),
                count=self._unlogged_drops,
                reason="outbox full" if reason == "full" else "older than max_age",
                full_since_start=self.dropped_full,
                expired_since_start=self.dropped_expired,
            )
            self._unlogged_drops = 0
            self._last_drop_log = now

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lock_handle.close()
