"""Each event's snapshot kept as a file, `<state dir>/snapshots/<event_id>.jpg`, with or without a broker.

The web UI and users' scripts read the files from there. The store is bounded: at most `keep_files` files,
none older than `keep_days` days (the oldest go first). Files are written by one background thread, so the
detection thread only hands over the JPEG bytes it already encoded; if the disk cannot keep up, snapshots
beyond a small queue are dropped (counted, logged once) rather than blocking detection. Each file is
written under a temporary name and renamed, so a reader never sees half a JPEG; nothing is fsynced (a
snapshot lost in a power cut is not worth an SD card's write latency on the frame path).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from nvr.errors import ConfigError
from nvr.events.config import SnapshotConfig
from nvr.events.payload import FaceEvent
from nvr.events.sink import EventSink
from nvr.recognition.output import RecognitionSink
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent

log = structlog.get_logger(__name__)

SUFFIX = ".jpg"
# Event ids are `<epoch>.<micros>-<6 chars>`; anything else never becomes a file name.
_EVENT_ID = re.compile(r"[0-9A-Za-z._-]{1,64}")
_PRUNE_EVERY = 600.0  # seconds between age checks while no snapshot arrives


class SnapshotStore:
    """Writes `<directory>/<event_id>.jpg` off the caller's thread and keeps the directory bounded."""

    def __init__(
        self,
        directory: Path,
        *,
        keep_files: int,
        keep_days: float,
        queue_size: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.keep_files = keep_files
        self.max_age = keep_days * 86400.0
        self._clock = clock
        self._queue: queue.Queue[tuple[str, bytes] | threading.Event | None] = queue.Queue(queue_size)
        # Event ids whose file was accepted (caller's side): which event lines may name a snapshot path.
        self._accepted: OrderedDict[str, None] = OrderedDict()
        # Files on disk, oldest first, with their write time (writer thread only).
        self._files: OrderedDict[str, float] = OrderedDict()
        self.written = 0
        self.dropped = 0
        self.removed = 0
        self.failed = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"snapshot folder {directory}: cannot create it ({reason})") from None
        self._thread = threading.Thread(target=self._run, name="snapshot-files", daemon=True)
        self._thread.start()

    @classmethod
    def for_config(cls, state_dir: Path, config: SnapshotConfig) -> SnapshotStore | None:
        """The store under `<state_dir>/snapshots`, or None when snapshots or their files are turned off."""
        if not config.enabled or config.keep_files == 0:
            return None
        return cls(state_dir / "snapshots", keep_files=config.keep_files, keep_days=config.keep_days)

    def path_for(self, event_id: str) -> Path:
        return self.directory / f"{event_id}{SUFFIX}"

    def path_of(self, event_id: str) -> Path | None:
        """The snapshot file of `event_id` if one was saved (it may since have been pruned), else None."""
        return self.path_for(event_id) if event_id in self._accepted else None

    def save(self, event_id: str, jpeg: bytes) -> bool:
        """Queue `jpeg` as the snapshot of `event_id` (replacing an earlier one); False if it was dropped."""
        if not _EVENT_ID.fullmatch(event_id) or event_id.startswith("."):
            raise ValueError(f"not an event id: {event_id!r}")
        try:
            self._queue.put_nowait((event_id, jpeg))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("snapshot files fall behind: snapshot not kept", event_id=event_id,
                            dropped=self.dropped, directory=str(self.directory))  # fmt: skip
            return False
        self._accepted[event_id] = None
        self._accepted.move_to_end(event_id)
        while len(self._accepted) > self.keep_files:
            self._accepted.popitem(last=False)
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued snapshot is on disk; False if that took longer than `timeout`."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout` seconds) and stop the writer thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("snapshot files: queue still full at exit", directory=str(self.directory))
            return
        self._thread.join(timeout)

    # The writer thread.

    def _run(self) -> None:
        self._scan()
        while True:
            try:
                item = self._queue.get(timeout=_PRUNE_EVERY)
            except queue.Empty:
                self._prune()
                continue
            if item is None:  # close()
                return
            if isinstance(item, threading.Event):  # flush()
                item.set()
                continue
            self._write(*item)
            self._prune()

    def _scan(self) -> None:
        """Adopt the files a previous run left, oldest first, so the bounds hold across restarts."""
        found: list[tuple[float, str]] = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                        try:
                            found.append((entry.stat().st_mtime, entry.name[: -len(SUFFIX)]))
                        except OSError:
                            continue
                    elif entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        _unlink(Path(entry.path))  # a write interrupted by a crash
        except OSError as exc:
            log.warning("snapshot files: cannot list the directory", directory=str(self.directory),
                        error=exc.strerror or str(exc))  # fmt: skip
        for mtime, event_id in sorted(found):
            self._files[event_id] = mtime
        self._prune()

    def _write(self, event_id: str, jpeg: bytes) -> None:
        target = self.path_for(event_id)
        temporary = self.directory / f".{event_id}{SUFFIX}.tmp"
        try:
            temporary.write_bytes(jpeg)
            os.replace(temporary, target)
        except OSError as exc:
            self.failed += 1
            _unlink(temporary)
            if self.failed == 1 or self.failed % 1000 == 0:
                log.error("snapshot file not written", path=str(target), error=exc.strerror or str(exc),
                          failed=self.failed)  # fmt: skip
            return
        self.written += 1
        self._files[event_id] = self._clock()
        self._files.move_to_end(event_id)

    def _prune(self) -> None:
        oldest_kept = self._clock() - self.max_age
        while self._files:
            event_id, written = next(iter(self._files.items()))
            if len(self._files) <= self.keep_files and written >= oldest_kept:
                break
            del self._files[event_id]
            if _unlink(self.path_for(event_id)):
                self.removed += 1


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("snapshot file not removed", path=str(path), error=exc.strerror or str(exc))
        return False
    return True


class ForwardedSink(EventSink, RecognitionSink, Protocol):
    """What the daemon's sinks take: events and recognition's output."""


class SnapshotFilesSink:
    """Keeps each event's snapshot as a file, then hands everything on (used in front of the MQTT sink)."""

    def __init__(self, inner: ForwardedSink, store: SnapshotStore) -> None:
        self.inner = inner
        self.store = store

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        for event in events:
            if event.snapshot is not None:
                self.store.save(event.id, event.snapshot)
        self.inner.publish_events(events)

    def publish_face_count(self, camera: str, count: int) -> None:
        self.inner.publish_face_count(camera, count)

    def enable_strangers(self, camera: str) -> None:
        self.inner.enable_strangers(camera)

    def publish_stranger(self, event: StrangerEvent) -> None:
        self.inner.publish_stranger(event)

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        self.inner.publish_presence(states)

    def publish_people(self, change: PeopleChange) -> None:
        self.inner.publish_people(change)

    def close(self, timeout: float = 5.0) -> None:
        try:
            self.inner.close(timeout)
        finally:
            self.store.close(timeout)
