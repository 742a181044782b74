"""The detection stage: every camera's frames -> the one shared inference engine -> faces -> tracking.

Two threads, one per direction:

- *frames* reads the decoders' `FrameReady` notices (one queue for all cameras), holds the frame's slot
  and puts it in its camera's mailbox (`FairScheduler`: the newest frame per camera; an older waiting
  frame is superseded and released).
- *results* takes the engine's results in order, checks the slot still holds the frame, decodes and
  filters the faces, and hands a `FrameResult` to the sink (tracking, then recognition and events, all
  during the call), whose snapshot is a view of the slot (the stages copy the crops they keep during the
  call); only then is the slot released. It also ends quiet tracks (`sink.expire`), so the stages after
  detection are only ever used from this thread.

Both threads then move frames from the mailboxes to the engine, round-robin across cameras, while the
engine has fewer than `max_in_flight` frames outstanding (so its own drop-oldest queue, which cannot tell
cameras apart, never overflows) and the camera has fewer than `per_camera` (so a busy camera cannot fill
the device's queue ahead of a quiet one: a quiet camera's frame waits for at most one round). Two frames
per camera keep a Hailo busy while the host postprocesses the previous one; beyond that, queueing adds
latency, not throughput. A CPU backend runs behind `SyncEngine` with one frame outstanding: the same code.

The engine copies the pixels once, into its device buffer; the `PendingFrame` it is given checks on
release that the copy was intact but keeps the slot held (see nvr/detection/inflight.py for why frames are
released only up to the oldest one still held). A held slot is never rewritten by its decoder, so a torn
frame means the protocol was broken; it is dropped and counted wherever it is noticed: when the engine
copies it, before its result is used, or (counted and logged; it cannot be taken back) after the event
stage has cut its snapshot.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from nvr.backends.base import EngineResult, InferenceEngine
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.frameslots import FrameReady, FrameRing
from nvr.detection.inflight import CameraCounters, CameraSlots, PendingFrame
from nvr.detection.scheduler import FairScheduler
from nvr.detection.zones import FaceFilter
from nvr.postprocess.base import Postprocessor

__all__ = [
    "CameraCounters", "DetectionPipeline", "FrameSink", "PipelineCounters", "ReadyQueue", "per_camera_limit",
]  # fmt: skip

log = structlog.get_logger(__name__)
_POLL_S = 0.25  # how long either thread waits before looking at the stop flag again
PER_CAMERA_IN_FLIGHT = 2


def per_camera_limit(ring_slots: int) -> int:
    """Frames a camera may have in the engine: one ring slot stays for its mailbox, one for its decoder."""
    return max(1, min(PER_CAMERA_IN_FLIGHT, ring_slots - 2))


class ReadyQueue(Protocol):
    """Where frames are announced (`FrameReady`): the decoders' `nvr.capture.FrameFeed`, or a queue."""

    def get(self, block: bool = True, timeout: float | None = None) -> FrameReady: ...


class FrameSink(Protocol):
    """What the stages after detection offer the pipeline (tracking -> recognition -> events)."""

    def handle(self, result: FrameResult) -> None:
        """Called for every processed frame; `result.snapshot` is valid only during the call."""
        ...

    def expire(self) -> None:
        """Called about twice a second: end the tracks (and events) of faces (or cameras) gone quiet."""
        ...


@dataclass
class PipelineCounters:
    frames: int = 0  # frames through the model whose outputs were used
    inference_seconds: float = 0.0  # sum over those frames of submission -> result
    last_inference: float = 0.0
    last_frame: float = 0.0  # time.monotonic() of the newest processed frame
    errors: int = 0  # exceptions in the pipeline itself
    in_flight_max: int = 0  # most frames outstanding in the engine at once
    cameras: dict[str, CameraCounters] = field(default_factory=dict)


class DetectionPipeline:
    """Cameras are attached and detached by the daemon's thread while the pipeline runs."""

    def __init__(
        self,
        engine: InferenceEngine,
        postprocessor: Postprocessor,
        sink: FrameSink,
        ready: ReadyQueue,
        *,
        max_in_flight: int = 1,
        per_camera: int = 1,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._engine = engine
        self._postprocessor = postprocessor
        self._sink = sink
        self.counters = PipelineCounters()
        self._ready = ready
        self._max_in_flight = max(1, max_in_flight)
        self._per_camera = max(1, min(per_camera, self._max_in_flight))
        self._on_error = on_error
        self._lock = threading.Lock()  # cameras, mailboxes, holds, outstanding, settings
        self._new_threshold: float | None = None  # set by the daemon's thread, applied by the results thread
        self._submit_lock = threading.Lock()  # keeps `_outstanding` in the engine's submission order
        self._cameras: dict[str, CameraSlots] = {}
        self._scheduler: FairScheduler[PendingFrame] = FairScheduler()
        self._outstanding: collections.deque[PendingFrame] = collections.deque()  # submission order
        self._torn: queue.SimpleQueue[PendingFrame] = queue.SimpleQueue()  # torn during the engine's copy
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_frames, name="detection-frames", daemon=True),
            threading.Thread(target=self._read_results, name="detection-results", daemon=True),
        ]
        self._last_error = ""
        self._error_logged = 0.0
        self._repeats = 0

    # -- control, from the daemon's thread ---------------------------------------------------------

    def attach(self, name: str, ring: FrameRing, face_filter: FaceFilter) -> None:
        with self._lock:
            counters = self.counters.cameras.setdefault(name, CameraCounters())
            self._cameras[name] = CameraSlots(name, ring, face_filter, counters, self._lock)

    def detach(self, name: str) -> None:
        """Stop using `name`'s ring: once this returns the pipeline calls none of its methods. Its frames
        in flight still come back from the engine; they are dropped without touching the ring."""
        with self._lock:
            slots = self._cameras.pop(name, None)
            self.counters.cameras.pop(name, None)
            waiting = self._scheduler.discard(name)
            if waiting is not None:
                self._finish(waiting)
            if slots is not None:
                slots.attached = False

    def set_filter(self, name: str, face_filter: FaceFilter) -> None:
        with self._lock:
            slots = self._cameras.get(name)
            if slots is not None:
                slots.face_filter = face_filter

    def set_threshold(self, threshold: float) -> None:
        """The lowest face score the postprocessor keeps (each camera's filter keeps its own threshold
        above it). The results thread applies it before it decodes its next frame, never during one."""
        with self._lock:
            self._new_threshold = threshold

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Finish the frame being handled, drop the rest; True if both threads ended in time."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for pending in [*self._scheduler.drain(), *self._outstanding]:
                self._finish(pending)
            self._outstanding.clear()
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def queue_depth(self) -> int:
        """Cameras with a frame waiting in their mailbox."""
        return len(self._scheduler)

    @property
    def in_flight(self) -> int:
        """Frames handed to the engine whose result has not been handled yet."""
        return len(self._outstanding)

    # -- the frames thread -----------------------------------------------------------------------------

    def _read_frames(self) -> None:
        while not self._stop.is_set():
            try:
                ready = self._ready.get(True, _POLL_S)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue was closed: shutting down
                self._stop.set()
                return
            self._guarded(self._accept, ready)
            self._guarded(self._dispatch)

    def _accept(self, ready: FrameReady) -> None:
        with self._lock:
            slots = self._cameras.get(ready.camera)
            if slots is None:
                return  # detached meanwhile
            frame = slots.hold(ready)
            if frame is None:
                return
            displaced = self._scheduler.offer(PendingFrame(slots, frame, self._torn.put))
            if displaced is not None:
                displaced.slots.counters.superseded += 1
                self._finish(displaced)

    # -- both threads ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand waiting frames to the engine, round-robin, within the in-flight bounds."""
        with self._submit_lock:
            picked: list[PendingFrame] = []
            with self._lock:
                while len(self._outstanding) < self._max_in_flight:
                    pending = self._scheduler.take(self._may_send)
                    if pending is None:
                        break
                    if not pending.slots.is_intact(pending.frame):
                        pending.slots.counters.torn += 1
                        self._finish(pending)
                        continue
                    pending.slots.in_flight += 1
                    pending.submitted = time.monotonic()
                    self._outstanding.append(pending)
                    picked.append(pending)
                self.counters.in_flight_max = max(self.counters.in_flight_max, len(self._outstanding))
            for pending in picked:  # outside `_lock`: the engine may call `release` at once
                self._engine.submit(pending)

    def _may_send(self, camera: str) -> bool:
        return self._cameras[camera].in_flight < self._per_camera

    def _finish(self, pending: PendingFrame) -> None:
        """Done with a frame, whatever became of it: release its hold (under `_lock`)."""
        if pending.done:
            return
        pending.done = True
        if pending.submitted:
            pending.slots.in_flight -= 1
        pending.slots.unhold(pending.frame_index)

    # -- the results thread ----------------------------------------------------------------------------

    def _read_results(self) -> None:
        next_expire = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_expire:
                next_expire = time.monotonic() + 0.5
                self._guarded(self._sink.expire)
            self._guarded(self._drop_torn)
            self._apply_settings()
            result = self._engine.get_result(_POLL_S)
            if result is not None:
                self._guarded(self._complete, result)
                self._guarded(self._dispatch)

    def _apply_settings(self) -> None:
        with self._lock:
            threshold, self._new_threshold = self._new_threshold, None
        if threshold is not None:
            self._postprocessor.score_threshold = threshold

    def _drop_torn(self) -> None:
        """Frames whose copy into the engine was torn: the engine dropped them, no result will come."""
        dropped = False
        while True:
            try:
                pending = self._torn.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                if pending.done:
                    continue
                pending.slots.counters.torn += 1
                if pending in self._outstanding:
                    self._outstanding.remove(pending)
                self._finish(pending)
                dropped = True
        if dropped:
            self._dispatch()

    def _complete(self, result: EngineResult) -> None:
        pending = result.tag
        with self._lock:
            if not isinstance(pending, PendingFrame) or pending.done or pending not in self._outstanding:
                result.release()  # finished meanwhile (torn, or dropped at shutdown)
                return
            # Results come in submission order: frames submitted before this one that have no result
            # were dropped by the engine.
            while self._outstanding[0] is not pending:
                lost = self._outstanding.popleft()
                lost.slots.counters.dropped += 1
                self._finish(lost)
            self._outstanding.popleft()
            usable = pending.slots.is_intact(pending.frame)
        try:
            self._use(result, pending, usable)
        finally:
            with self._lock:
                self._finish(pending)

    def _use(self, result: EngineResult, pending: PendingFrame, intact: bool) -> None:
        slots, frame = pending.slots, pending.frame
        counters = slots.counters
        try:
            if result.error is not None:
                counters.failed += 1  # the engine logged it
                return
            if not intact:
                if slots.attached:
                    counters.torn += 1
                return
            finished = time.monotonic()
            pipeline = self.counters
            pipeline.frames += 1
            pipeline.last_inference = finished - pending.submitted
            pipeline.inference_seconds += pipeline.last_inference
            pipeline.last_frame = finished
            letterbox = frame.model_letterbox
            detections = self._postprocessor.decode(result.outputs, letterbox)
        finally:
            result.release()  # the engine's buffers go back to its pool before the event stage runs
        detections = slots.face_filter.apply(detections, letterbox.src_width, letterbox.src_height)
        snapshot, scale = None, 1.0
        snap_lb = frame.snapshot_letterbox
        if snap_lb is not None:
            snapshot = frame.snapshot[: snap_lb.resized_height, : snap_lb.resized_width]
            scale = snap_lb.scale_x
        self._sink.handle(
            FrameResult(
                camera=slots.name,
                frame_index=frame.frame_index,
                capture_time=frame.wall_time,
                frame_size=(letterbox.src_width, letterbox.src_height),
                detections=detections,
                snapshot=snapshot,
                snapshot_scale=scale,
            )
        )
        with self._lock:
            torn_late = slots.attached and not slots.is_intact(frame)
        if torn_late:
            counters.torn += 1
            log.error("a frame's slot was rewritten while its snapshot was cut", camera=slots.name)
        counters.processed += 1
        counters.faces += len(detections)
        counters.last_processed = time.monotonic()
        counters.latency_sum += max(0.0, time.time() - frame.wall_time)

    # -- errors ----------------------------------------------------------------------------------------

    def _guarded(self, step: Callable[..., None], *args: object) -> None:
        """One failing frame must not end detection for every camera."""
        try:
            step(*args)
        except Exception as exc:
            self.counters.errors += 1
            self._log_error(exc)
            if self._on_error is not None:
                self._on_error(exc)

    def _log_error(self, exc: Exception) -> None:
        """The first failure with its traceback; a repeating one at most once a minute, with a count."""
        now = time.monotonic()
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            self._last_error, self._error_logged, self._repeats = text, now, 0
            log.exception("detection failed on a frame", error=text)
        elif now - self._error_logged >= 60.0:
            log.error("detection keeps failing", error=text, times=self._repeats + 1)
            self._error_logged, self._repeats = now, 0
        else:
            self._repeats += 1
