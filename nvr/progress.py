"""Progress on stderr for long runs (evaluations, downloads, benchmarks).

On a terminal one line is redrawn in place; in a log (systemd, CI) a line is written every tenth of the
way, so logs stay short and still show that work is moving.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._interactive = self.stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_tenth = -1

    def advance(self, amount: int = 1, note: str = "") -> None:
        self.done += amount
        self._draw(note)

    def _text(self, note: str) -> str:
        elapsed = time.monotonic() - self._started
        if self.unit == "B":
            rate = self.done / elapsed if elapsed > 0 else 0.0
            amount = f"{_bytes(self.done)}" + (f"/{_bytes(self.total)}" if self.total else "")
            text = f"{self.label}: {amount} ({_bytes(int(rate))}/s)"
        else:
            amount = f"{self.done}" + (f"/{self.total}" if self.total else "")
            text = f"{self.label}: {amount} {self.unit}".rstrip()
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * 24)
            text = f"{text} [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%}"
        return f"{text} {note}".rstrip()

    def _draw(self, note: str) -> None:
        now = time.monotonic()
        if self._interactive:
            finished = self.total is not None and self.done >= self.total
            if now - self._last_draw >= 0.1 or finished:
                self._last_draw = now
                self.stream.write("\r\033[K" + self._text(note))
                self.stream.flush()
            return
        if self.total:
            tenth = min(10, self.done * 10 // self.total)
            if tenth != self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(self._text(note) + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self._interactive:
            self.stream.write("\r\033[K" + self._text("") + "\n")
            self.stream.flush()


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
