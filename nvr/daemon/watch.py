"""Notice when the configuration file changes (edited in place, replaced by an editor, or re-created)."""

from __future__ import annotations

import os
import time
from pathlib import Path

Signature = tuple[int, int, int] | None  # inode, size, mtime_ns; None while the file is missing


def _signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class FileWatcher:
    """Polls the file's identity; reports a change once it has been stable for `settle` seconds,
    so a half-written file is not read mid-save."""

    def __init__(self, path: Path, settle: float = 0.5) -> None:
        self.path = path
        self._settle = settle
        self._seen = _signature(path)
        self._pending: Signature = None
        self._pending_since = 0.0

    def mark_seen(self) -> None:
        """The file as it is now has been read (e.g. on SIGHUP): do not report it again."""
        self._seen, self._pending = _signature(self.path), None

    def changed(self) -> bool:
        current = _signature(self.path)
        if current == self._seen or current is None:  # a missing file is waited out, not "changed"
            self._pending = None
            return False
        now = time.monotonic()
        if current != self._pending:
            self._pending, self._pending_since = current, now
            return False
        if now - self._pending_since < self._settle:
            return False
        self._seen, self._pending = current, None
        return True
