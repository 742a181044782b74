"""A synchronous backend (ONNX Runtime, TFLite) dressed as an `InferenceEngine`, so the daemon drives the CPU
and the Hailo the same way.

There is nothing to overlap on the CPU: the model runs on the thread that asks for the result, straight
from the frame's pixels (no copy beyond the backend's own normalisation), one frame at a time. `submit`
only parks the frame; when more than `capacity` frames wait, the oldest is dropped, like the Hailo engine.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nvr.backends.base import InferenceBackend
from nvr.contracts.frameref import FrameRef
from nvr.contracts.tensors import RawOutput

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncEngineStats:
    submitted: int = 0
    dropped: int = 0  # frames dropped oldest-first because `capacity` frames were already waiting
    torn: int = 0  # frames whose pixels changed while the model read them
    completed: int = 0
    failed: int = 0


@dataclass(slots=True)
class SyncResult:
    tag: object
    outputs: Sequence[RawOutput]
    error: str | None = None

    def release(self) -> None:
        """Nothing is lent: the outputs are the backend's own arrays for this call."""


class SyncEngine:
    def __init__(self, backend: InferenceBackend, capacity: int = 1) -> None:
        self.backend = backend
        self.name = backend.name
        self.capacity = capacity
        self.stats = SyncEngineStats()
        self._waiting: collections.deque[FrameRef] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def submit(self, frame: FrameRef) -> None:
        with self._cond:
            self._waiting.append(frame)
            self.stats.submitted += 1
            dropped = self._waiting.popleft() if len(self._waiting) > self.capacity else None
            self._cond.notify()
        if dropped is not None:  # released outside the lock: a FrameRef may take locks of its own
            dropped.release()
            self.stats.dropped += 1

    def get_result(self, timeout: float | None = None) -> SyncResult | None:
        """Run the model on the oldest waiting frame; None if none came within `timeout` (or it was torn)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._waiting and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if not self._waiting:
                return None
            frame = self._waiting.popleft()
        outputs: Sequence[RawOutput] = ()
        error = None
        try:
            outputs = self.backend.infer(frame.pixels)
        except Exception as exc:  # one bad frame: reported with the result, the engine carries on
            error = f"{type(exc).__name__}: {exc}"
            self.stats.failed += 1
            log.warning("inference failed on a frame: %s", error)
        if not frame.release():
            self.stats.torn += 1
            return None
        self.stats.completed += 1
        return SyncResult(frame.tag, outputs, error)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for frame in waiting:
            frame.release()
        self.backend.close()
