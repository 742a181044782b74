"""The best aligned face crop of every event, kept in the state directory so a user can enrol it later
(`nvr faces add NAME --event EVENT_ID`). Bounded by age and count; written and pruned off the frame path."""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CROPS_DIR = "crops"
_EVENT_ID = re.compile(r"[0-9]+\.[0-9]+-[a-z0-9]+")
_PRUNE_EVERY = 60.0  # seconds between two scans of the folder


def crops_dir(state_dir: Path) -> Path:
    return state_dir / CROPS_DIR


def crop_path(state_dir: Path, event_id: str) -> Path | None:
    """Where an event's crop is (or would be); None for a string that is not an event id."""
    if not _EVENT_ID.fullmatch(event_id):
        return None
    return crops_dir(state_dir) / f"{event_id}.jpg"


class CropStore:
    """`put(event_id, jpeg)` from any thread; a background thread writes the files and prunes the folder."""

    def __init__(self, state_dir: Path, keep_days: float, keep_max: int) -> None:
        self.state_dir = state_dir
        self.folder = crops_dir(state_dir)
        self.keep_seconds = keep_days * 86400.0
        self.keep_max = keep_max
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recognition-crops", daemon=True)
        self._next_prune = 0.0
        self.written = 0
        self._thread.start()

    def put(self, event_id: str, jpeg: bytes) -> None:
        if self.keep_max > 0 and self.keep_seconds > 0:
            self._queue.put((event_id, jpeg))

    def close(self, timeout: float = 2.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(*item)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + _PRUNE_EVERY
                    self.prune()
            except OSError as exc:
                log.warning("event crop not kept", event_id=item[0], error=str(exc))

    def _write(self, event_id: str, jpeg: bytes) -> None:
        path = crop_path(self.state_dir, event_id)
        if path is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(jpeg)
        os.replace(temporary, path)
        self.written += 1

    def prune(self, now: float | None = None) -> int:
        """Delete crops older than keep_days, then the oldest beyond keep_max; returns how many went."""
        now = time.time() if now is None else now
        try:
            entries = [(p.stat().st_mtime, p) for p in self.folder.glob("*.jpg")]
        except OSError:
            return 0
        entries.sort()
        doomed = [p for mtime, p in entries if now - mtime > self.keep_seconds]
        kept = len(entries) - len(doomed)
        if kept > self.keep_max:
            doomed += [p for _, p in entries[len(doomed) : len(doomed) + kept - self.keep_max]]
        for path in doomed:
            path.unlink(missing_ok=True)
        return len(doomed)
