"""Which frames the detection pipeline holds in each camera's ring, and the references it gives the engine.

A frame is held from its `FrameReady` until the event stage is done with it: waiting in its camera's
mailbox, queued or running in the engine, then postprocessed and handed to the events stage, which crops
its snapshots from the slot. Holding means the decoder does not rewrite the slot (it only rewrites slots
up to the ring's `released` index), so the snapshot is the frame the faces were found in, with no copy.

`FrameRing.release(n)` frees frame n *and every older frame*. With several frames of a camera held at
once, finished in any order (a frame in flight finishes after a newer one was superseded in the mailbox;
a frame the engine drops finishes before older ones still on the device), releasing the finished frame's
index would free frames still in use. So `CameraSlots` releases the ring only up to just below the oldest
frame still held.

Every method here runs under the pipeline's lock (`CameraSlots.lock`), including `PendingFrame.release`,
which the engine calls from its own thread once it has copied the pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from nvr.contracts.arrays import RgbImage
from nvr.contracts.frameslots import FrameReady, FrameRing, SlotFrame
from nvr.detection.zones import FaceFilter


@dataclass
class CameraCounters:
    """Per-camera pipeline figures, read by the metrics endpoint."""

    processed: int = 0  # frames whose faces reached the event stage
    faces: int = 0
    stale: int = 0  # frames overwritten before we got to them (the decoder restarted, or a late notice)
    superseded: int = 0  # frames replaced in the mailbox by a newer one of the same camera
    torn: int = 0  # frames whose slot was rewritten while held: dropped, never shown to the event stage
    dropped: int = 0  # frames the engine dropped (its queue overflowed)
    failed: int = 0  # frames whose inference failed
    last_processed: float = 0.0  # time.monotonic()
    latency_sum: float = 0.0  # capture -> faces handed to the events stage, seconds


class CameraSlots:
    """One attached camera: its ring, face filter, counters and the frames held in its ring.

    A restarted camera is a new `CameraSlots`: results of the old one's frames still in flight find
    `attached` false and leave its (closed) ring alone.
    """

    def __init__(
        self, name: str, ring: FrameRing, face_filter: FaceFilter, counters: CameraCounters,
        lock: threading.Lock,
    ) -> None:  # fmt: skip
        self.name = name
        self.ring = ring
        self.face_filter = face_filter
        self.counters = counters
        self.lock = lock
        self.attached = True
        self.in_flight = 0  # frames submitted to the engine and not finished
        self._held: list[int] = []  # frame indexes, a handful at most
        self._newest = -1  # newest frame index seen in this ring (validated against the slot)

    def hold(self, ready: FrameReady) -> SlotFrame | None:
        """Read the slot `ready` names and hold it; None (counted stale) if it no longer has that frame."""
        frame = self.ring.read(ready.slot)
        if frame is None or frame.frame_index != ready.frame_index:
            self.counters.stale += 1
            return None
        self._held.append(frame.frame_index)
        self._newest = max(self._newest, frame.frame_index)
        return frame

    def is_intact(self, frame: SlotFrame) -> bool:
        """The slot still has `frame` (False once detached: the ring may be gone)."""
        return self.attached and self.ring.is_intact(frame)

    def unhold(self, frame_index: int) -> None:
        """Done with `frame_index`: hand the ring back up to just below the oldest frame still held."""
        self._held.remove(frame_index)
        if not self.attached:
            return
        limit = min(self._held) - 1 if self._held else self._newest
        if limit > self.ring.released_frame_index:
            self.ring.release(limit)

    @property
    def held(self) -> int:
        return len(self._held)


class PendingFrame:
    """A held frame on its way through the pipeline; the `FrameRef` the engine reads (tag: itself).

    `release()` is the engine saying it has finished copying the pixels: it checks that the copy is
    intact but keeps the slot held (the event stage still needs the snapshot). A torn copy produces no
    result, so `on_torn` tells the pipeline to finish the frame.
    """

    __slots__ = ("copied", "done", "frame", "on_torn", "slots", "submitted")

    def __init__(self, slots: CameraSlots, frame: SlotFrame, on_torn: Callable[[PendingFrame], None]) -> None:
        self.slots = slots
        self.frame = frame
        self.on_torn = on_torn
        self.submitted = 0.0  # time.monotonic() when handed to the engine; 0: still in the mailbox
        self.copied = False
        self.done = False

    @property
    def camera(self) -> str:
        return self.slots.name

    @property
    def frame_index(self) -> int:
        return self.frame.frame_index

    @property
    def pixels(self) -> RgbImage:
        return self.frame.model_input

    @property
    def tag(self) -> object:
        return self

    def release(self) -> bool:
        """Called by the engine's thread; never raises (an exception there would restart the engine)."""
        with self.slots.lock:
            self.copied = True
            intact = not self.done and self.slots.is_intact(self.frame)
        if not intact:
            self.on_torn(self)
        return intact
