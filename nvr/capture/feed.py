"""How decoder processes tell the inference stage that a frame is ready: one pipe per decoder start.

A `multiprocessing.Queue` shared by the decoders has a write lock shared across processes. A decoder killed
while it holds that lock (the OOM killer, a crash in a codec, `kill -9`) leaves it held for good, and from
then on no camera's frame arrives at all. Here every start of a decoder gets a pipe of its own, written with
single non-blocking 16-byte writes (atomic on a pipe), so a writer dying at any instant leaves nothing
locked and nothing half-written; its pipe simply ends (EOF) and the next start brings a new one.

    feed = FrameFeed()                             # the daemon's side, read by the inference stage
    end = feed.connect("door")                     # per decoder start: hand `end` to the new process
    notify = FrameNotifier(end)                    # in the decoder: notify(slot, frame_index) per commit
    ready = feed.get(timeout=0.2)                  # FrameReady of any camera, in arrival order
"""

from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing.connection
import os
import queue
import select
import struct
import threading
import time

from nvr.contracts.frameslots import FrameReady
from nvr.wakeup import Wakeup

_RECORD = struct.Struct("<qq")  # slot, frame index; far below PIPE_BUF, so one write is atomic
_READ_BYTES = _RECORD.size * 256  # whole records: a pipe only ever holds whole ones

Connection = multiprocessing.connection.Connection


class FrameNotifier:
    """The decoder's end of its pipe. Never blocks: the ring's back-pressure keeps at most a few notices
    (one per ring slot) unread, far below what a pipe holds."""

    def __init__(self, end: Connection) -> None:
        self._end = end  # owns the descriptor
        self._fd = end.fileno()
        os.set_blocking(self._fd, False)
        self._record = bytearray(_RECORD.size)

    def __call__(self, slot: int, frame_index: int) -> None:
        _RECORD.pack_into(self._record, 0, slot, frame_index)
        # The consumer is gone (shutting down) or impossibly far behind: a lost notice costs one frame.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, self._record)

    def close(self) -> None:
        self._end.close()


class FrameFeed:
    """Every camera's `FrameReady` notices, in arrival order. `get` is called by one consumer thread (like
    `queue.Queue.get`, raising `queue.Empty`); `connect` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connected: list[tuple[Connection, str]] = []  # handed over to the consumer thread by `get`
        self._changed = Wakeup()
        # Owned by the consumer thread alone:
        self._poll = select.poll()
        self._poll.register(self._changed.fileno(), select.POLLIN)
        self._readers: dict[int, tuple[Connection, str]] = {}
        self._pending: collections.deque[FrameReady] = collections.deque()
        self._closed = False

    def connect(self, camera: str) -> Connection:
        """A new pipe for one start of `camera`'s decoder. Pass the returned end to that process, then close
        it here once the process has started, so that the pipe ends when the decoder does."""
        reader, writer = multiprocessing.Pipe(duplex=False)
        with self._lock:
            if self._closed:
                reader.close()
                writer.close()
                raise ValueError("frame feed closed")
            self._connected.append((reader, camera))
        self._changed.set()
        return writer

    @property
    def decoders(self) -> int:
        """Pipes with a live writer (or unread notices) at the last `get`."""
        return len(self._readers)

    def get(self, block: bool = True, timeout: float | None = None) -> FrameReady:
        deadline = None if timeout is None or not block else time.monotonic() + timeout
        while not self._pending:
            if self._closed:
                raise ValueError("frame feed closed")
            self._take_connected()
            if not block:
                wait_ms: int | None = 0
            elif deadline is None:
                wait_ms = None
            else:
                wait_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
            events = self._poll.poll(wait_ms)
            for fd, _ in events:
                if fd == self._changed.fileno():
                    self._changed.clear()
                else:
                    self._read(fd)
            if not self._pending and (wait_ms == 0 or (not events and deadline is not None)):
                raise queue.Empty
        return self._pending.popleft()

    def close(self) -> None:
        """After the consumer thread has stopped: close every pipe."""
        with self._lock:
            self._closed = True
            connected, self._connected = self._connected, []
        for reader, _ in connected:
            reader.close()
        for reader, _ in self._readers.values():
            reader.close()
        self._readers.clear()
        self._changed.close()

    def _take_connected(self) -> None:
        with self._lock:
            connected, self._connected = self._connected, []
        for reader, camera in connected:
            fd = reader.fileno()
            self._readers[fd] = (reader, camera)
            self._poll.register(fd, select.POLLIN)  # an ended pipe reports POLLHUP as well

    def _read(self, fd: int) -> None:
        entry = self._readers.get(fd)
        if entry is None:
            return  # closed under us (a shutdown that did not wait for this thread)
        reader, camera = entry
        try:
            data = os.read(fd, _READ_BYTES)
        except OSError:
            data = b""
        if not data:  # the decoder is gone and everything it wrote has been read
            self._poll.unregister(fd)
            del self._readers[fd]
            reader.close()
            return
        for slot, frame_index in _RECORD.iter_unpack(data):
            self._pending.append(FrameReady(camera, slot, frame_index))
