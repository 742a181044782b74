"""Per-camera capture statistics, written by the decoder process and read by the daemon at any time.

The counters live in a small shared ctypes block (no queue to drain, no segment name to clean up: it
comes from multiprocessing's anonymous shared heap). Only the decoder writes it; readers take a
`CaptureStats` snapshot. Each field is one aligned 8-byte word, so no field is ever read half-written.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from enum import IntEnum


class CaptureState(IntEnum):
    STARTING = 0  # process not yet running its loop
    CONNECTING = 1  # first connection attempt
    STREAMING = 2  # frames are arriving
    RECONNECTING = 3  # lost or failed; waiting out the backoff between attempts
    STOPPED = 4  # the loop has ended (stop requested, or a non-looping file ended)


class StatsBlock(ctypes.Structure):
    _fields_ = (
        ("state", ctypes.c_int64),
        ("frames_decoded", ctypes.c_int64),
        ("frames_sampled", ctypes.c_int64),
        ("frames_skipped", ctypes.c_int64),
        ("reconnects", ctypes.c_int64),
        ("decode_errors", ctypes.c_int64),
        ("width", ctypes.c_int64),
        ("height", ctypes.c_int64),
        ("input_fps", ctypes.c_double),
        ("sampled_fps", ctypes.c_double),
        ("last_frame_time", ctypes.c_double),
    )


@dataclass(frozen=True, slots=True)
class CaptureStats:
    state: CaptureState
    frames_decoded: int  # every decoded frame since the process started
    frames_sampled: int  # frames picked at detect_fps (written + skipped)
    frames_skipped: int  # sampled frames dropped because the consumer still held every slot
    reconnects: int  # connection attempts after a loss or a failure
    decode_errors: int  # packets the decoder rejected or frames it had to patch up (the stream goes on)
    width: int  # source size of the current stream, 0 before the first frame
    height: int
    input_fps: float
    sampled_fps: float
    last_frame_time: float  # time.time() of the newest decoded frame, 0 if none

    @property
    def frames_written(self) -> int:
        return self.frames_sampled - self.frames_skipped

    @classmethod
    def read(cls, block: StatsBlock) -> CaptureStats:
        return cls(
            CaptureState(block.state), block.frames_decoded, block.frames_sampled, block.frames_skipped,
            block.reconnects, block.decode_errors, block.width, block.height, block.input_fps,
            block.sampled_fps, block.last_frame_time,
        )  # fmt: skip


class RateMeter:
    """Frames-per-second of the decoder's counters, refreshed about once a second."""

    def __init__(self, block: StatsBlock, interval: float = 1.0) -> None:
        self._block = block
        self._interval = interval
        self._since = time.monotonic()
        self._decoded = block.frames_decoded
        self._sampled = block.frames_sampled

    def tick(self, now: float) -> None:
        elapsed = now - self._since
        if elapsed < self._interval:
            return
        block = self._block
        block.input_fps = (block.frames_decoded - self._decoded) / elapsed
        block.sampled_fps = (block.frames_sampled - self._sampled) / elapsed
        self._since, self._decoded, self._sampled = now, block.frames_decoded, block.frames_sampled

    def reset(self, now: float) -> None:
        """Start a fresh window (after a reconnect) and show zero until it has data."""
        self._block.input_fps = self._block.sampled_fps = 0.0
        block = self._block
        self._since, self._decoded, self._sampled = now, block.frames_decoded, block.frames_sampled
