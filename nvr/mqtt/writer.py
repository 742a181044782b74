"""The outbox's writer thread: durable commits off the detection thread.

The event stage hands each frame's messages over with `submit`, which appends them to a list and returns:
it never waits for the disk. The writer thread commits everything waiting in one transaction (group
commit) as soon as the previous commit is done, so a batch waits at most for one commit ahead of it, and
the sender sees a message only once it is committed. The promise, `commit_interval` (default 0.1 s):
every message is on disk within that time of being submitted; a SIGKILL or power cut loses at most the
messages of the last `commit_interval`, none of which was sent. Since a batch may wait for the commit
ahead of it and then its own, the promise holds while one commit takes less than half of `commit_interval`
(each commit is one WAL fsync: see `nvr.mqtt.checkpoint`). A disk slower than that (an SD card in trouble)
breaks the promise visibly: each late commit is counted and logged, with how late it was and how long the
commit itself took.

Open events (id, camera, start, last sighting, last payload) ride in the same transactions, so the next
start can end the events a killed daemon left open without any extra disk write on the frame path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from nvr.mqtt.outbox import NewMessage

log = structlog.get_logger(__name__)

_LATE_LOG_INTERVAL = 10.0  # seconds between two warnings about late commits
_RETRY_DELAY = 1.0  # seconds before a failed commit (disk full, I/O error) is tried again
_DELETE_DELAY = 1.0  # seconds acknowledged rows may wait for a commit that has messages anyway


@dataclass(frozen=True, slots=True)
class OpenEvent:
    """An event that has started and not ended, as the outbox keeps it for the next start."""

    id: str
    camera: str
    start_time: float
    last_seen: float  # capture time of the latest sighting sent
    payload: bytes  # the event's latest message (JSON), from which its `end` is made after a restart


@dataclass(slots=True)
class Batch:
    """What waits for the next commit: messages in order, open-event records, events that ended."""

    messages: list[NewMessage] = field(default_factory=list)
    opened: dict[str, OpenEvent] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)  # outbox rows the broker acknowledged
    since: float | None = None  # monotonic time the oldest waiting item was submitted
    done: bool = False  # set by the commit function in the same critical section that counts the rows

    def __bool__(self) -> bool:
        return bool(self.urgent or self.deleted)

    @property
    def urgent(self) -> bool:
        """Holds something with a deadline (messages, open-event changes); deletions alone can wait."""
        return bool(self.messages or self.opened or self.closed)

    def merge_older(self, older: Batch) -> None:
        """Put a batch whose commit failed back in front of this (newer) one."""
        self.messages[:0] = older.messages
        still_open = {k: v for k, v in older.opened.items() if k not in self.closed}
        self.opened = {**still_open, **self.opened}
        self.closed |= older.closed
        self.deleted |= older.deleted
        if older.since is not None:
            self.since = older.since if self.since is None else min(self.since, older.since)


Commit = Callable[[Batch], object]


class OutboxWriter:
    """One thread that commits submitted batches; `submit` never blocks on the disk."""

    def __init__(
        self,
        commit: Commit,
        commit_interval: float,
        max_messages: int,
        *,
        on_commit: Callable[[], None] | None = None,
        on_drop: Callable[[int, int], None] | None = None,
        after_commit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "outbox-writer",
    ) -> None:
        self._commit = commit
        self.commit_interval = commit_interval
        self._max_messages = max_messages
        self.on_commit = on_commit
        self._on_drop = on_drop
        self._after_commit = after_commit  # upkeep on this thread once the commit is out (WAL checkpoints)
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting = Batch()
        self._submitted = 0  # batches handed in, and committed: flush() waits for the two to meet
        self._committed = 0
        self._stopping = False
        self._committing: Batch | None = None
        self.commits = 0
        self.late_commits = 0
        self.max_lag = 0.0  # seconds from submit to commit, the worst seen
        self._last_late_log = -_LATE_LOG_INTERVAL
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending_messages(self) -> int:
        """Messages handed in and not committed yet (waiting, or in the commit under way)."""
        committing = self._committing
        in_commit = len(committing.messages) if committing is not None and not committing.done else 0
        return len(self._waiting.messages) + in_commit

    def submit(
        self,
        messages: Sequence[NewMessage],
        opened: Iterable[OpenEvent] = (),
        closed: Iterable[str] = (),
    ) -> None:
        """Queue messages (and open-event changes) for the next commit; returns at once."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the outbox is closed")
            waiting = self._waiting
            if waiting.since is None:
                waiting.since = self._clock()
            waiting.messages.extend(messages)
            for record in opened:
                waiting.opened[record.id] = record
            for event_id in closed:
                waiting.opened.pop(event_id, None)
                waiting.closed.add(event_id)
            excess = len(waiting.messages) - self._max_messages
            if excess > 0:  # the disk has stalled for long: keep memory bounded, as the outbox does on disk
                dropped = waiting.messages[:excess]
                del waiting.messages[:excess]
                if self._on_drop is not None:
                    self._on_drop(len(dropped), sum(m.size for m in dropped))
            self._submitted += 1
            self._cond.notify_all()

    def delete(self, seqs: Iterable[int]) -> None:
        """Queue acknowledged rows for deletion in the next commit. Not urgent: a delete lost to a crash
        only means the message is sent once more (QoS 1 allows it), so it never costs a sync of its own."""
        with self._cond:
            self._waiting.deleted.update(seqs)
            self._cond.notify_all()

    def deleting(self) -> set[int]:
        """Rows acknowledged but not deleted yet (the sender must not hand them out again)."""
        with self._cond:
            committing = self._committing
            extra = committing.deleted if committing is not None and not committing.done else set()
            return self._waiting.deleted | extra

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed; False if `timeout` passed first."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            target = self._submitted
            while self._committed < target and self._thread.is_alive():
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._committed >= target

    def close(self, timeout: float | None = None) -> bool:
        """Commit what is waiting, then stop the thread; False if it did not finish within `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                # Deletions alone wait (up to _DELETE_DELAY) to share a commit with new messages: one
                # sync fewer per delivered batch, which a slow disk needs for the commits that matter.
                waited_since = self._clock()
                while not self._waiting.urgent and not self._stopping:
                    if self._waiting.deleted:
                        left = waited_since + _DELETE_DELAY - self._clock()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if not self._waiting and self._stopping:
                    return
                batch = self._committing = self._waiting  # counted twice for an instant, never missed
                self._waiting = Batch()
                target = self._submitted
            if not self._commit_batch(batch):
                with self._cond:
                    self._waiting.merge_older(batch)
                    self._committing = None
                    stopping = self._stopping
                if stopping:
                    log.error(
                        "outbox writer stopped with messages not committed", messages=len(batch.messages)
                    )
                    return
                time.sleep(_RETRY_DELAY)
                continue
            with self._cond:
                self._committed = target
                self._cond.notify_all()
            if self.on_commit is not None:
                self.on_commit()
            if self._after_commit is not None:
                self._after_commit()

    def _commit_batch(self, batch: Batch) -> bool:
        started = self._clock()
        try:
            self._commit(batch)
        except Exception as exc:  # disk full, I/O error: keep the batch in memory and try again
            log.error("outbox commit failed; retrying", error=str(exc), messages=len(batch.messages))
            return False
        self.commits += 1
        lag = self._clock() - (batch.since or self._clock())
        self.max_lag = max(self.max_lag, lag)
        if lag > self.commit_interval:
            self.late_commits += 1
            now = self._clock()
            if now - self._last_late_log >= _LATE_LOG_INTERVAL:
                self._last_late_log = now
                # A batch waits for at most the commit ahead of it, then its own: when one commit takes
                # more than half of commit_interval (commit_seconds), the disk cannot keep the promise.
                log.warning(
                    "outbox commit later than commit_interval: the disk is slow",
                    lag=round(lag, 3), commit_seconds=round(now - started, 3),
                    commit_interval=self.commit_interval, late_commits=self.late_commits,
                )  # fmt: skip
        return True
