"""The durable outbox: an SQLite queue (WAL) between the event pipeline and the broker.

Every event message is committed here before it is handed to the MQTT client, and deleted only when the
broker acknowledged it (PUBACK). After a broker outage or a daemon restart the sender starts again from the
oldest row, so messages go out in the order they were written (per camera, and overall) and none is lost;
one may be sent twice, which QoS 1 allows (consumers dedupe on the event id). The queue is bounded by count,
bytes and age; what it drops is counted and logged.

The pipeline hands messages over with `submit`, which never waits for the disk: `nvr.mqtt.writer` commits
them in batches on its own thread, within `commit_interval` of being made and before they can be sent. The
same transactions keep the table of open events, from which the next start ends what a killed daemon left
open (`open_events`).
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
from nvr.mqtt.checkpoint import Checkpointer
from nvr.mqtt.config import OutboxConfig
from nvr.mqtt.writer import Batch, OpenEvent, OutboxWriter

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2  # 2: open_events (a version-1 file is upgraded in place)
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
CREATE TABLE IF NOT EXISTS open_events (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    start_time REAL NOT NULL,
    last_seen REAL NOT NULL,
    payload BLOB NOT NULL
);
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
            # The sender reads through its own connection: in WAL mode a reader never waits for a commit
            # (which can take tens of milliseconds on an SD card) and sees only committed rows.
            self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._read_lock = threading.Lock()
            self._checkpointer = Checkpointer(path, config.synchronous)
        except BaseException:
            self._lock_handle.close()
            raise
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM messages"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)
        if self._count:
            log.info("outbox holds messages from an earlier run", path=str(self.path), count=self._count)
        self._writer = OutboxWriter(
            self._commit_batch, config.commit_interval, config.max_messages,
            on_drop=self._dropped_waiting, after_commit=self._after_commit,
        )  # fmt: skip

    @property
    def checkpointer(self) -> Checkpointer:
        return self._checkpointer

    def _after_commit(self) -> None:
        """On the writer thread between two commits: restart the WAL if the checkpoint thread asks for it."""
        if self._checkpointer.restart_due:
            with self._lock:
                self._checkpointer.restart_if_due(self._db)

    @property
    def writer(self) -> OutboxWriter:
        return self._writer

    def set_on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the writer thread) after each commit: new messages can be sent."""
        self._writer.on_commit = callback

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
            if version not in (0, 1, SCHEMA_VERSION):
                raise InputFileError(
                    f"outbox {path}: schema version {version} is not {SCHEMA_VERSION}"
                    " (made by another nvr version)"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._config.synchronous.upper()}")
            # No checkpoint inside a commit (SQLite's default every 1000 pages, three fsyncs instead of one):
            # nvr.mqtt.checkpoint runs them on a connection and thread of their own.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise InputFileError(f"outbox {path}: not a usable SQLite database ({exc})") from None
        except OSError as exc:
            raise InputFileError(f"outbox {path}: cannot create ({exc.strerror or exc})") from None
        return db

    def __len__(self) -> int:
        """Undelivered messages: on disk, and waiting for the writer's next commit."""
        with self._lock:
            return self._count + self._writer.pending_messages

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def submit(
        self, messages: Sequence[NewMessage], opened: Sequence[OpenEvent] = (), closed: Sequence[str] = ()
    ) -> None:
        """Hand messages (and changes to the open events) to the writer; returns without touching the disk.
        They are committed within `commit_interval`, in order, and only then can be sent."""
        self._check_size(messages)
        self._writer.submit(messages, opened, closed)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed (False if `timeout` passed first)."""
        return self._writer.flush(timeout)

    def put(self, messages: Sequence[NewMessage]) -> list[int]:
        """Commit `messages` now (after what was submitted before) and return their sequence numbers."""
        self._check_size(messages)
        self._writer.flush()
        return self._commit_batch(Batch(list(messages)))

    def _check_size(self, messages: Sequence[NewMessage]) -> None:
        size = sum(m.size for m in messages)
        if size > self._config.max_bytes:
            raise ValueError(
                f"{size} bytes of messages exceed the outbox's max_bytes {self._config.max_bytes}"
            )

    def _commit_batch(self, batch: Batch) -> list[int]:
        """One transaction: make room (dropping the oldest if the bounds require it), insert the messages,
        record the open events; returns the messages' sequence numbers."""
        messages = batch.messages
        size = sum(m.size for m in messages)
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
                self._db.executemany(
                    "INSERT OR REPLACE INTO open_events (id, camera, start_time, last_seen, payload)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(e.id, e.camera, e.start_time, e.last_seen, e.payload) for e in batch.opened.values()],
                )
                self._db.executemany("DELETE FROM open_events WHERE id = ?", [(i,) for i in batch.closed])
                freed = self._delete_rows(sorted(batch.deleted))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(messages) - dropped[0] - freed[0]
            self._bytes += size - dropped[1] - freed[1]
            batch.done = True  # counted on disk now, no longer as waiting (see __len__)
        self._checkpointer.poke()  # checkpoints run on their own thread, never inside a commit
        if dropped[0]:
            self.dropped_full += dropped[0]
            self._note_drops(dropped[0], "full")
        return seqs

    def _dropped_waiting(self, count: int, size: int) -> None:
        """The writer dropped messages it could not commit in time (the disk stalled) to bound memory."""
        self.dropped_full += count
        self._note_drops(count, "full")

    def open_events(self) -> list[OpenEvent]:
        """The events that started and did not end (left by a daemon that was killed), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, camera, start_time, last_seen, payload FROM open_events ORDER BY start_time, id"
            ).fetchall()
        return [OpenEvent(str(i), str(c), float(s), float(t), bytes(p)) for i, c, s, t, p in rows]

    def end_open_events(self, messages: Sequence[NewMessage], ended: Sequence[str]) -> None:
        """Commit the `end` messages of open events left by an earlier run, and forget those events."""
        self._writer.flush()
        self._commit_batch(Batch(list(messages), closed=set(ended)))

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
        """The oldest messages with a sequence number above `after_seq`, in order (not those acknowledged)."""
        deleting = self._writer.deleting()
        with self._read_lock:
            rows = self._reader.execute(
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
            if seq not in deleting
        ]

    def acknowledge(self, seqs: Sequence[int]) -> None:
        """Delivered (or refused for good): deleted in the writer's next transaction, never sent again."""
        if seqs:
            self._writer.delete(seqs)

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove messages now, in one transaction."""
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
        self._checkpointer.poke()
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
        # Looked for through the reader, which never waits for a commit: the sender calls this every 10 s,
        # and taking the writer's lock to look would hold it (and delivery) for up to a whole commit.
        with self._read_lock:
            rows = self._reader.execute("SELECT seq FROM messages WHERE created < ?", (cutoff,)).fetchall()
        if not rows:
            return 0
        with self._lock:
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
        """Commit what the writer holds, then close the database."""
        self._writer.close()
        self._checkpointer.close()
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()
            self._lock_handle.close()
