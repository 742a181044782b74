"""The detection thread: frames from every camera's ring -> the shared model -> faces -> the event stage.

One thread owns the inference backend, so no lock is needed around it. It drains the capture processes'
`FrameReady` notifications into the fair scheduler, runs the model on the slot in place (no copy of the
frame), decodes and filters the faces, and hands a `FrameResult` to the event sink while the slot is
still held, so the sink can crop snapshots from the shared-memory frame; then it releases the slot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from nvr.backends.base import InferenceBackend
from nvr.daemon.scheduler import FairScheduler
from nvr.daemon.zones import FaceFilter
from nvr.frameresult import FrameResult
from nvr.frameslots import FrameReady, FrameRing
from nvr.postprocess.base import Postprocessor

log = structlog.get_logger("nvr.daemon")


class ReadyQueue(Protocol):
    """The queue the decoder processes post `FrameReady` on (a `multiprocessing.Queue`)."""

    def get(self, block: bool = True, timeout: float | None = None) -> FrameReady: ...


class FrameSink(Protocol):
    """What the event stage offers the pipeline (tracker, lifecycle, snapshots, publishing)."""

    def handle(self, result: FrameResult) -> None:
        """Called for every processed frame; `result.snapshot` is valid only during the call."""
        ...

    def expire(self) -> None:
        """Called about twice a second: end the events of faces (or cameras) gone quiet."""
        ...


@dataclass
class CameraCounters:
    """Per-camera pipeline figures, read by the metrics endpoint."""

    processed: int = 0
    faces: int = 0
    stale: int = 0  # frames overwritten before we got to them, or rewritten while read
    superseded: int = 0  # frames replaced in the mailbox by a newer one of the same camera
    last_processed: float = 0.0  # time.monotonic()
    latency_sum: float = 0.0  # capture -> faces handed to the events stage, seconds


@dataclass
class PipelineCounters:
    frames: int = 0
    inference_seconds: float = 0.0  # sum of backend.infer wall time
    last_inference: float = 0.0
    last_frame: float = 0.0  # time.monotonic() of the newest processed frame
    errors: int = 0
    cameras: dict[str, CameraCounters] = field(default_factory=dict)


@dataclass
class _Camera:
    ring: FrameRing
    face_filter: FaceFilter
    counters: CameraCounters


class DetectionPipeline:
    """Runs in its own thread; cameras are attached and detached by the daemon while it runs."""

    def __init__(
        self,
        backend: InferenceBackend,
        postprocessor: Postprocessor,
        sink: FrameSink,
        ready: ReadyQueue,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.backend = backend
        self.postprocessor = postprocessor
        self.sink = sink
        self._ready = ready  # a multiprocessing queue fed by the decoder processes
        self._scheduler = FairScheduler()
        self._cameras: dict[str, _Camera] = {}
        self._lock = threading.Lock()  # guards _cameras between the daemon thread and ours
        self._busy = threading.Lock()  # held by our thread for each step: detach() waits on it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="detection", daemon=True)
        self._on_error = on_error
        self.counters = PipelineCounters()
        self._last_error = ""
        self._error_logged = 0.0
        self._repeats = 0

    # -- control, from the daemon's thread ---------------------------------------------------------

    def attach(self, name: str, ring: FrameRing, face_filter: FaceFilter) -> None:
        with self._lock:
            counters = self.counters.cameras.setdefault(name, CameraCounters())
            self._cameras[name] = _Camera(ring, face_filter, counters)

    def detach(self, name: str) -> None:
        """Stop reading `name`'s ring; returns once the pipeline no longer touches it."""
        with self._lock:
            self._cameras.pop(name, None)
            self.counters.cameras.pop(name, None)
        with self._busy:  # a frame of that camera in flight is finished before we return
            self._scheduler.discard(name)

    def set_filter(self, name: str, face_filter: FaceFilter) -> None:
        with self._lock:
            camera = self._cameras.get(name)
            if camera is not None:
                camera.face_filter = face_filter

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Finish the frame in flight, drop the waiting ones; True if the thread ended in time."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return len(self._scheduler)

    # -- the thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        next_expire = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_expire:
                    next_expire = time.monotonic() + 0.5
                    self.sink.expire()
                with self._busy:
                    self._collect(block=len(self._scheduler) == 0)
                    ready = self._scheduler.take()
                    if ready is not None:
                        self._process(ready)
            except Exception as exc:  # one bad frame must not end detection for every camera
                self.counters.errors += 1
                self._log_error(exc)
                if self._on_error is not None:
                    self._on_error(exc)
                time.sleep(0.05)
        # Whatever is still waiting is dropped: release it so a restarted ring starts clean.
        with self._busy:
            while (ready := self._scheduler.take()) is not None:
                self._release(ready)

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

    def _collect(self, block: bool) -> None:
        """Move every pending notification into the mailboxes (waiting a little if there is nothing to do)."""
        timeout = 0.1 if block else None
        while True:
            try:
                ready = self._ready.get(True, timeout) if timeout else self._ready.get(False)
            except queue.Empty:
                return
            except (EOFError, OSError, ValueError):  # queue closed during shutdown
                self._stop.set()
                return
            timeout = None
            displaced = self._scheduler.offer(ready)
            if displaced is not None:
                camera = self._camera(displaced.camera)
                if camera is not None:
                    camera.counters.superseded += 1
                self._release(displaced)

    def _camera(self, name: str) -> _Camera | None:
        with self._lock:
            return self._cameras.get(name)

    def _release(self, ready: FrameReady) -> None:
        # Releasing frame N frees every older slot too; a displaced frame is always older than the one
        # left waiting in its mailbox, so that one stays held.
        camera = self._camera(ready.camera)
        if camera is not None:
            camera.ring.release(ready.frame_index)

    def _process(self, ready: FrameReady) -> None:
        camera = self._camera(ready.camera)
        if camera is None:
            return  # detached meanwhile
        ring, counters = camera.ring, camera.counters
        try:
            frame = ring.read(ready.slot)
            if frame is None or frame.frame_index != ready.frame_index:
                counters.stale += 1
                return
            started = time.monotonic()
            outputs = self.backend.infer(frame.model_input)
            finished = time.monotonic()
            if not ring.is_intact(frame):
                counters.stale += 1
                return
            pipeline = self.counters
            pipeline.frames += 1
            pipeline.inference_seconds += finished - started
            pipeline.last_inference = finished - started
            pipeline.last_frame = finished
            letterbox = frame.model_letterbox
            detections = self.postprocessor.decode(outputs, letterbox)
            detections = camera.face_filter.apply(detections, letterbox.src_width, letterbox.src_height)
            snapshot = None
            scale = 1.0
            snap_lb = frame.snapshot_letterbox
            if snap_lb is not None:
                snapshot = frame.snapshot[: snap_lb.resized_height, : snap_lb.resized_width]
                scale = snap_lb.scale_x
            result = FrameResult(
                camera=ready.camera,
                frame_index=frame.frame_index,
                capture_time=frame.wall_time,
                frame_size=(letterbox.src_width, letterbox.src_height),
                detections=detections,
                snapshot=snapshot,
                snapshot_scale=scale,
            )
            self.sink.handle(result)
            counters.processed += 1
            counters.faces += len(detections)
            counters.last_processed = time.monotonic()
            counters.latency_sum += max(0.0, time.time() - frame.wall_time)
        finally:
            ring.release(ready.frame_index)
