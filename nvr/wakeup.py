"""A wake-up flag that a signal handler may set.

`threading.Event.set()` takes the event's (non-reentrant) lock. A Python signal handler runs in the main
thread between two bytecodes, so when the main thread is itself inside `Event.wait()` holding that lock,
the handler's `set()` waits for a lock its own thread holds: the process hangs and never stops on SIGTERM.
Here `set()` is one non-blocking write to a pipe and `wait()` a poll on it; no lock is involved.

The kernel may deliver a process's signal to any of its threads. Python then runs the handler in the main
thread, but only once that thread next runs Python code: a main thread blocked in `wait()` would sleep on
(forever, without a timeout). `wake_on_signals` makes the signal itself write to the pipe, from whichever
thread receives it, so the main thread wakes and its handler runs at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal


class Wakeup:
    """`set`/`wait`/`clear` like a `threading.Event`, safe from signal handlers and from any thread."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._on_signals = False

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full of earlier wake-ups: set already
            os.write(self._write_fd, b"\0")

    def fileno(self) -> int:
        """Readable while set: for waiting on this flag together with other descriptors."""
        return self._read_fd

    def wake_on_signals(self) -> None:
        """Any signal with a Python handler sets this flag, whichever thread gets it. Main thread only."""
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._on_signals = True

    def is_set(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        """True once set (until `clear`), False after `timeout` seconds."""
        # poll, not select: select fails on descriptors past 1024, which a busy daemon can reach. One poll
        # object per call: a shared one refuses two threads waiting at once.
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))

    def clear(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass  # drained

    def close(self) -> None:
        if self._on_signals:  # give the signal wake-up back, unless somebody has taken it over since
            previous = signal.set_wakeup_fd(-1)
            if previous != self._write_fd:
                signal.set_wakeup_fd(previous)
        os.close(self._read_fd)
        os.close(self._write_fd)
