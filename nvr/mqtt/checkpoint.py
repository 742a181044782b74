"""WAL checkpoints for the outbox, kept out of the commits that carry messages.

SQLite checkpoints a WAL database from inside a commit by default (every 1000 pages): that commit then also
syncs the WAL once more and the database file, three fsyncs where one was due, which on a slow disk (an SD
card) made the events of that commit and the next ones late. The outbox switches that off on the writer's
connection and checkpoints here instead, on a connection and thread of its own, with PASSIVE checkpoints:
they never take the writer's lock, so a message commit never waits for one and costs one fsync of the WAL.

Two costs remain, both rare and both logged by the writer when they make a commit late:
  * After a checkpoint that caught up with the whole WAL, the next commit starts the WAL over from its
    beginning, and SQLite syncs the new WAL header before the frames (its guard against replaying an old
    WAL cycle after a power cut): that commit costs two fsyncs. It happens at most once per checkpoint, i.e.
    once per `interval`, and only when the writer paused long enough for the checkpoint to catch up.
  * A writer that never pauses (a slow disk and a busy scene) never lets a PASSIVE checkpoint catch up, and
    the WAL would grow without end; past `wal_limit` frames the writer runs a RESTART checkpoint between two
    commits (`restart_if_due`): two fsyncs, and two in the commit after it (the new WAL header).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CHECKPOINT_INTERVAL = 5.0  # seconds of commits gathered in the WAL between two checkpoints
# Pages (64 MiB at SQLite's 4 KiB) beyond which the writer restarts the WAL itself. A forced restart holds
# the writer for about four fsyncs (checkpoint: WAL + database; the next commit: WAL header + frames), so
# it should be rare: under the heaviest constant load measured (120 messages/s, ~250 pages/s) it comes
# every ~65 s; at ordinary event rates a checkpoint catches up long before.
WAL_LIMIT_FRAMES = 16384


class Checkpointer:
    """A thread that checkpoints the outbox's WAL `interval` seconds after commits, without blocking them."""

    def __init__(
        self,
        path: Path,
        synchronous: str,
        *,
        interval: float | None = None,
        wal_limit: int | None = None,
    ) -> None:
        self._interval = CHECKPOINT_INTERVAL if interval is None else interval
        self._wal_limit = WAL_LIMIT_FRAMES if wal_limit is None else wal_limit
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")  # the checkpoint's syncs follow it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.restart_due = False  # set here, cleared by the writer thread once it restarted the WAL
        self.checkpoints = 0
        self.restarts = 0
        self.wal_frames = 0  # the WAL's length at the latest checkpoint, in pages
        self.max_wal_frames = 0
        self.caught_up = True  # the latest checkpoint copied every frame the WAL had when it began
        self._running = False
        self._thread = threading.Thread(target=self._run, name="outbox-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A commit happened (called on the writer thread; never blocks)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.wait(self._interval):  # let an interval of commits gather: fewer, larger syncs
                return
            self._running = True
            self._wake.clear()
            try:
                busy, frames, done = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # I/O error: the WAL keeps the data; try again after more commits
                log.warning("outbox checkpoint failed", error=str(exc))
                continue
            finally:
                self._running = False
            self.checkpoints += 1
            self.wal_frames = int(frames)
            self.max_wal_frames = max(self.max_wal_frames, self.wal_frames)
            self.caught_up = not busy and frames == done
            # `frames` is the WAL's length, which only a restart makes small again. (A checkpoint that copied
            # all of it has "caught up" only if no commit came in meanwhile: the commits alone can tell.)
            if frames >= self._wal_limit:
                self.restart_due = True

    def settled(self) -> bool:
        """No checkpoint due or under way, and the latest one caught up with every commit (for tests)."""
        return not self._wake.is_set() and not self._running and self.caught_up

    def restart_if_due(self, db: sqlite3.Connection) -> None:
        """On the writer's thread and connection, between two commits: when the WAL has grown past the
        limit (no checkpoint could catch up with a writer that never pauses), checkpoint all of it and
        let the next commit start it over."""
        if not self.restart_due:
            return
        started = time.monotonic()
        try:
            busy, frames, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:  # I/O error: the WAL keeps the data; try again after the next commit
            log.warning("outbox WAL restart failed", error=str(exc))
            return
        if busy:  # a reader held on to the WAL for the whole busy timeout: try after the next commit
            return
        self.restart_due = False
        self.restarts += 1
        self.wal_frames = 0
        log.info(
            "outbox WAL restarted: it had grown past its limit under constant writes",
            frames=int(frames), seconds=round(time.monotonic() - started, 3),
        )  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._db.close()
