"""The event lifecycle of one camera: tracks become `new` / `update` / `end` messages with a best face.

A face's event starts when its track is confirmed (`new`, with a snapshot of the best face so far), sends an
`update` at most every `update_interval` seconds while the face stays in view, and ends (`end`, with
`end_time` set) once the face has been absent for `end_after` seconds. All times are capture times, so the
messages describe the scene, not when the daemon got round to processing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nvr.contracts.faces import Detections
from nvr.contracts.frameresult import FrameResult
from nvr.events.config import EventsConfig
from nvr.events.payload import EventType, FaceEvent, FaceObservation, new_event_id
from nvr.events.snapshot import FaceCrop, SnapshotMaker
from nvr.events.tracker import IouTracker, Track


def face_quality(face: FaceObservation) -> float:
    """How good a sighting is for a snapshot: confident and large (linear size, so score still matters)."""
    return face.score * math.sqrt(face.area)


def valid_detections(
    detections: Detections, min_score: float, min_size: float
) -> tuple[npt.NDArray[np.intp], int]:
    """Indices of the faces worth tracking (finite numbers, a real box, above the score and size limits),
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
        keep = finite & (detections.scores >= min_score) & (np.minimum(width, height) >= max(min_size, 1e-3))
    return np.flatnonzero(keep), n - int(np.count_nonzero(finite))


@dataclass(slots=True, eq=False)
class _OpenEvent:
    id: str
    start_time: float
    frame_size: tuple[int, int]
    frames: int
    face: FaceObservation
    best: FaceObservation
    best_quality: float
    best_crop: FaceCrop | None
    crop_published: bool
    last_sent: float


class CameraEvents:
    """Turns one camera's frames into face events; its frames must arrive in order, on one thread."""

    def __init__(self, camera: str, config: EventsConfig, snapshots: SnapshotMaker) -> None:
        self.camera = camera
        self._config = config
        self._snapshots = snapshots
        self._tracker = IouTracker(config.tracker)
        self._open: dict[int, _OpenEvent] = {}
        self.invalid_faces = 0  # detections dropped for non-finite numbers or an empty box

    @property
    def open_count(self) -> int:
        """Faces currently in view (events started and not ended)."""
        return len(self._open)

    def process(self, frame: FrameResult) -> list[FaceEvent]:
        tracker_config = self._config.tracker
        detections = frame.detections
        if len(detections) == 0 and len(self._tracker) == 0:
            return []  # nobody in view, nobody leaving
        keep, invalid = valid_detections(detections, tracker_config.min_score, tracker_config.min_size)
        self.invalid_faces += invalid
        step = self._tracker.update(detections.boxes[keep], frame.capture_time)
        messages: list[FaceEvent] = []
        for track, m in step.matched:
            if track.confirmed:
                message = self._observe(frame, track, int(keep[m]))
                if message is not None:
                    messages.append(message)
        for track in step.ended:
            messages.append(self._end(track))
        return messages

    def end_all(self) -> list[FaceEvent]:
        """End every open event (the camera stopped sending frames, or the daemon is stopping)."""
        return [self._end(track) for track in self._tracker.close()]

    def _observe(self, frame: FrameResult, track: Track, index: int) -> FaceEvent | None:
        detections = frame.detections
        box = detections.boxes[index].tolist()
        face = FaceObservation(
            frame_time=frame.capture_time,
            box=(box[0], box[1], box[2], box[3]),
            score=float(detections.scores[index]),
            landmarks=tuple((p[0], p[1]) for p in detections.landmarks[index].tolist()),
            landmark_names=detections.landmark_names,
        )
        event = self._open.get(track.track_id)
        kind: EventType
        if event is None:
            event = _OpenEvent(
                id=new_event_id(track.first_seen),
                start_time=track.first_seen,
                frame_size=frame.frame_size,
                frames=track.hits,
                face=face,
                best=face,
                best_quality=-1.0,
                best_crop=None,
                crop_published=False,
                last_sent=frame.capture_time,
            )
            self._open[track.track_id] = event
            kind = "new"
        else:
            event.frames += 1
            event.face = face
            event.frame_size = frame.frame_size
            kind = "update"
        quality = face_quality(face)
        if quality > event.best_quality:
            event.best, event.best_quality = face, quality
            if frame.snapshot is not None:
                crop = self._snapshots.capture(
                    frame.snapshot,
                    frame.snapshot_scale,
                    detections.boxes[index],
                    detections.landmarks[index],
                    detections.landmark_names,
                )
                if crop is not None:
                    event.best_crop, event.crop_published = crop, False
        if kind == "update" and frame.capture_time - event.last_sent < self._config.update_interval:
            return None
        return self._message(event, kind, None)

    def _end(self, track: Track) -> FaceEvent:
        event = self._open.pop(track.track_id)
        return self._message(event, "end", track.last_seen)

    def _message(self, event: _OpenEvent, kind: EventType, end_time: float | None) -> FaceEvent:
        snapshot = aligned = None
        if event.best_crop is not None and not event.crop_published:
            # A snapshot goes out only when the best face changed since the last one.
            snapshot = self._snapshots.encode(event.best_crop)
            aligned = self._snapshots.encode_aligned(event.best_crop)
            event.crop_published = True
        event.last_sent = event.face.frame_time
        return FaceEvent(
            type=kind,
            id=event.id,
            camera=self.camera,
            start_time=event.start_time,
            end_time=end_time,
            frame_size=event.frame_size,
            frames=event.frames,
            face=event.face,
            best=event.best,
            snapshot=snapshot,
            aligned=aligned,
        )
