"""The no-broker event file's writer: lines appended (and the file rotated) on a thread of its own.

The event stage runs on the detection thread, which must never wait for the disk (an SD card can stall for
seconds). `LineFile.write` queues a line and returns; the writer thread appends everything waiting in one
write, then runs each line's `after` callback (the sink logs the event there, so whoever reacts to the log
line finds it in the file). `close` writes everything queued before it returns: a clean shutdown loses
nothing. If the disk stalls for long, at most `MAX_PENDING_BYTES` wait in memory; lines beyond that are
dropped (the newest: the file keeps its order, with a gap), counted and logged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import structlog

from nvr.errors import ConfigError
from nvr.events.config import EventFileConfig

log = structlog.get_logger(__name__)

MAX_PENDING_BYTES = 8 * 1024 * 1024  # lines waiting for a stalled disk: ~12,000 face events
_DROP_LOG_INTERVAL = 10.0  # seconds between two warnings about dropped lines

After = Callable[[], None]


class LineFile:
    """Appends lines to `config.path`, rotated at `config.max_bytes` into `path.1` ... `path.N`."""

    def __init__(self, config: EventFileConfig, *, name: str = "event-file") -> None:
        self._config = config
        self._max_pending = MAX_PENDING_BYTES
        path = config.path
        try:  # opened here, on the caller's thread: a file that cannot be written is a config error at start
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 (held open for the writer's lifetime)
        except OSError as exc:
            raise ConfigError(f"event file {path}: cannot open for writing ({exc.strerror or exc})") from None
        self._size = self._file.tell()
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, After | None]] = []
        self._pending_bytes = 0
        self._writing = False
        self._stopping = False
        self.lines_written = 0
        self.lines_dropped = 0  # dropped because too much waited for the disk, or the write failed
        self._unlogged_drops = 0
        self._last_drop_log = -_DROP_LOG_INTERVAL
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self._config.path

    def write(self, line: bytes, after: After | None = None) -> bool:
        """Queue `line` (ending in a newline) and return at once; `after` runs on the writer thread once it
        is written. False when the line was dropped: too much is waiting for a stalled disk."""
        with self._cond:
            if self._stopping:
                raise RuntimeError(f"event file {self.path} is closed")
            if self._pending_bytes + len(line) > self._max_pending:
                self._dropped(1, "the disk is not keeping up")
                return False
            self._pending.append((line, after))
            self._pending_bytes += len(line)
            self._cond.notify_all()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line queued so far is written (False if `timeout` passed first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._writing) and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return not self._pending

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then close the file; False if that did not finish within `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("event file: lines still waiting for the disk at exit", path=str(self.path),
                      lines=len(self._pending))  # fmt: skip
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                if not batch:  # stopping, and everything is written
                    self._file.close()
                    self._cond.notify_all()
                    return
                self._writing = True
            try:
                self._write_batch([line for line, _ in batch])
            except OSError as exc:  # disk full, I/O error: these lines are lost, later ones may make it
                log.error("event file write failed", path=str(self.path), error=str(exc.strerror or exc))
                with self._cond:
                    self._dropped(len(batch), "write failed")
            else:
                self.lines_written += len(batch)
                for _, after in batch:
                    if after is not None:
                        try:
                            after()
                        except Exception as exc:  # a failing callback must not stop the writer
                            log.error("event file: callback after a write failed", error=str(exc))
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    def _write_batch(self, lines: Sequence[bytes]) -> None:
        """Append the lines (rotating the file where the next one would not fit) and flush once."""
        start = 0
        for i, line in enumerate(lines):
            if self._size and self._size + len(line) > self._config.max_bytes:
                self._file.write(b"".join(lines[start:i]))
                self._rotate()
                start = i
            self._size += len(line)
        self._file.write(b"".join(lines[start:]))
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        path = self._config.path
        if self._config.backups == 0:
            path.unlink(missing_ok=True)
        else:
            for n in range(self._config.backups - 1, 0, -1):
                older = path.with_name(f"{path.name}.{n}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
            os.replace(path, path.with_name(f"{path.name}.1"))
        self._file = open(path, "ab")  # noqa: SIM115
        self._size = 0

    def _dropped(self, count: int, reason: str) -> None:
        """Count (and now and then log) lines lost; the caller holds the condition's lock."""
        self.lines_dropped += count
        self._unlogged_drops += count
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "event file lines dropped", path=str(self.path), reason=reason, count=self._unlogged_drops,
                dropped_since_start=self.lines_dropped,
            )  # fmt: skip
            self._unlogged_drops = 0
            self._last_drop_log = now
