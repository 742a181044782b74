"""The tracking stage: each camera's per-frame faces in, tracked frames out to the next stage.

It runs on the detection pipeline's results thread (`handle`, `expire` and `close` from that one thread) and
calls the next stage synchronously, so a frame's snapshot image is still valid downstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import structlog

from nvr.contracts.arrays import IndexArray
from nvr.contracts.faces import Detections
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.tracks import EndedTrack, TrackedFace, TrackedFrame, TrackSink
from nvr.tracking.config import TrackerConfig
from nvr.tracking.tracker import IouTracker, Track

log = structlog.get_logger(__name__)


def valid_detections(
    detections: Detections, min_score: float | None, min_size: float
) -> tuple[IndexArray, int]:
    """Indices of the faces worth tracking (finite numbers, a real box, above the score and size limits;
    no score limit when `min_score` is None: the detection stage already applied the camera's threshold),
    and how many faces had non-finite numbers (a detector fault worth counting)."""
    n = len(detections)
    boxes = detections.boxes
    finite = (
        np.isfinite(boxes).all(axis=1)
        & np.isfinite(detections.scores)
        & np.isfinite(detections.landmarks).all(axis=(1, 2))
    )
    with np.errstate(invalid="ignore"):
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = finite & (np.minimum(width, height) >= max(min_size, 1e-3))
        if min_score is not None:
            keep &= detections.scores >= min_score
    return np.flatnonzero(keep), n - int(np.count_nonzero(finite))


def _ended(track: Track) -> EndedTrack:
    return EndedTrack(track.track_id, track.first_seen, track.last_seen, track.hits)


class TrackingStage:
    """One IoU tracker per camera; every frame goes on to `downstream` as a `TrackedFrame`."""

    def __init__(
        self, config: TrackerConfig, downstream: TrackSink, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._downstream = downstream
        self._clock = clock
        self._trackers: dict[str, IouTracker] = {}
        self._last_frame: dict[str, float] = {}
        self.invalid_faces = 0  # detections dropped for non-finite numbers

    def handle(self, frame: FrameResult) -> None:
        tracker = self._trackers.get(frame.camera)
        if tracker is None:
            tracker = self._trackers[frame.camera] = IouTracker(self._config)
        self._last_frame[frame.camera] = self._clock()
        detections = frame.detections
        if len(detections) == 0 and len(tracker) == 0:
            self._downstream.handle(TrackedFrame(frame.camera, frame))  # nobody in view, nobody leaving
            return
        keep, invalid = valid_detections(detections, self._config.min_score, self._config.min_size)
        self.invalid_faces += invalid
        step = tracker.update(detections.boxes[keep], frame.capture_time)
        faces = tuple(
            TrackedFace(track.track_id, int(keep[m]), track.first_seen, track.hits, track.confirmed)
            for track, m in step.matched
        )
        self._downstream.handle(
            TrackedFrame(frame.camera, frame, faces, tuple(_ended(track) for track in step.ended))
        )

    def expire(self) -> None:
        """End the tracks of cameras that sent no frame for `end_after` seconds (call it periodically)."""
        now = self._clock()
        for camera, tracker in self._trackers.items():
            quiet = now - self._last_frame.get(camera, now)
            if quiet >= self._config.end_after and any(track.confirmed for track in tracker.tracks):
                log.info("camera quiet: ending its face tracks", camera=camera, seconds=round(quiet, 1))
                self._end(camera, tracker)

    def close(self) -> None:
        """End every confirmed track (the daemon is stopping)."""
        for camera, tracker in self._trackers.items():
            self._end(camera, tracker)

    def _end(self, camera: str, tracker: IouTracker) -> None:
        ended = tracker.close()
        if ended:
            self._downstream.handle(TrackedFrame(camera, None, ended=tuple(_ended(t) for t in ended)))
