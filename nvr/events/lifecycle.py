"""The event lifecycle of one camera: face tracks become `new` / `update` / `end` messages with a best face.

A face's event starts when its track is confirmed (`new`, with a snapshot of the best face so far), sends an
`update` at most every `update_interval` seconds while the face stays in view, and ends (`end`, with
`end_time` set) once the face has been absent for `end_after` seconds. All times are capture times, so the
messages describe the scene, not when the daemon got round to processing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nvr.contracts.frameresult import FrameResult
from nvr.contracts.tracks import TrackedFace, TrackedFrame
from nvr.events.config import EventsConfig
from nvr.events.payload import EventType, FaceEvent, FaceObservation, new_event_id
from nvr.events.snapshot import FaceCrop, SnapshotMaker


def face_quality(face: FaceObservation) -> float:
    """How good a sighting is for a snapshot: confident and large (linear size, so score still matters)."""
    return face.score * math.sqrt(face.area)


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
    """Turns one camera's tracked frames into face events; its frames must arrive in order, on one thread."""

    def __init__(self, camera: str, config: EventsConfig, snapshots: SnapshotMaker) -> None:
        self.camera = camera
        self._config = config
        self._snapshots = snapshots
        self._open: dict[int, _OpenEvent] = {}  # by track id

    @property
    def open_count(self) -> int:
        """Faces currently in view (events started and not ended)."""
        return len(self._open)

    def process(self, tracked: TrackedFrame) -> list[FaceEvent]:
        messages: list[FaceEvent] = []
        frame = tracked.frame
        if frame is not None:
            for face in tracked.faces:
                if face.confirmed:
                    message = self._observe(frame, face)
                    if message is not None:
                        messages.append(message)
        for track in tracked.ended:
            if track.track_id in self._open:
                messages.append(self._end(track.track_id, track.last_seen))
        return messages

    def end_all(self) -> list[FaceEvent]:
        """End every open event whose track did not end (the daemon is stopping)."""
        return [self._end(track_id, event.face.frame_time) for track_id, event in list(self._open.items())]

    def _observe(self, frame: FrameResult, track: TrackedFace) -> FaceEvent | None:
        detections, index = frame.detections, track.index
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

    def _end(self, track_id: int, last_seen: float) -> FaceEvent:
        event = self._open.pop(track_id)
        return self._message(event, "end", last_seen)

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
