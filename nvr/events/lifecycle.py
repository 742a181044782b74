"""The event lifecycle of one camera: face tracks become `new` / `update` / `end` messages with a best face.

A face's event starts when its track is confirmed, or earlier when recognition names it (a face that matched
an enrolled person is no one-frame false positive, and its name should not wait for the confirming frame):
`new`, with a snapshot of the best face so far. It sends an `update` at most every `update_interval` seconds
while the face stays in view, and ends (`end`, with `end_time` set) once the face has been absent for
`end_after` seconds; an event started on a name ends at once if the tracker drops its track unconfirmed. All
times are capture times, so the messages describe the scene, not when the daemon got round to processing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog

from nvr.contracts.alignment import align_face
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.identity import Identity
from nvr.contracts.tracks import StrangerEvidence, TrackedFace, TrackedFrame
from nvr.events.config import EventsConfig
from nvr.events.payload import EventType, FaceEvent, FaceObservation, new_event_id
from nvr.events.snapshot import FaceCrop, SnapshotMaker, encode_jpeg
from nvr.recognition.output import RecognitionOutput
from nvr.recognition.strangers import StrangerEvent

log = structlog.get_logger(__name__)


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
    identity: Identity | None = None
    identity_due: bool = False  # the identity was decided or changed: an update goes out now
    track_id: int = -1
    confirmed: bool = True  # False: started on its name while its track was tentative, not confirmed since


@dataclass(frozen=True, slots=True)
class _Sighting:
    """A face of a tentative track, kept until the next frame in case recognition names the track before the
    tracker confirms it (the frame's pixels are gone by then, so the crop is taken now)."""

    face: FaceObservation
    crop: FaceCrop | None
    frame_size: tuple[int, int]
    first_seen: float
    hits: int


class CameraEvents:
    """Turns one camera's tracked frames into face events; its frames must arrive in order, on one thread."""

    def __init__(
        self,
        camera: str,
        config: EventsConfig,
        snapshots: SnapshotMaker,
        recognition: RecognitionOutput | None = None,
    ) -> None:
        self.camera = camera
        self._config = config
        self._snapshots = snapshots
        self._recognition = recognition
        self._open: dict[int, _OpenEvent] = {}  # by track id
        self._tentative: dict[int, _Sighting] = {}  # the last frame's tentative tracks (with recognition)
        self.strangers: list[tuple[StrangerEvent, StrangerEvidence]] = []  # after this frame's events

    @property
    def open_count(self) -> int:
        """Faces currently in view (events started and not ended)."""
        return len(self._open)

    def process(self, tracked: TrackedFrame) -> list[FaceEvent]:
        messages: list[FaceEvent] = []
        frame = tracked.frame
        for track_id, identity in tracked.identities.items():
            event = self._open.get(track_id)
            if event is not None and _changed(event.identity, identity):
                event.identity_due = True
            if event is not None:
                event.identity = identity
        seen: set[int] = set()
        if frame is not None:
            tentative: dict[int, _Sighting] = {}
            for face in tracked.faces:
                known = tracked.identities.get(face.track_id)
                named = known is not None and known.name is not None
                if face.confirmed or named or face.track_id in self._open:
                    seen.add(face.track_id)
                    message = self._observe(frame, face, known)
                    if message is not None:
                        messages.append(message)
                elif self._recognition is not None:
                    tentative[face.track_id] = self._sight(frame, face)
            self._tentative = tentative
            # A tentative track missing from a frame is dropped by the tracker, without an end of its own.
            for track_id, event in list(self._open.items()):
                if not event.confirmed and track_id not in seen:
                    messages.append(self._end(track_id, event.face.frame_time))
        elif tracked.ended:  # the camera went quiet or is stopping: the tracker dropped its tentative tracks
            self._tentative = {}
            for track_id, event in list(self._open.items()):
                if not event.confirmed:
                    messages.append(self._end(track_id, event.face.frame_time))
        for track_id, identity in tracked.identities.items():
            sighting = self._tentative.pop(track_id, None)
            if sighting is not None and identity.name is not None and track_id not in self._open:
                # Named between frames while tentative: the event starts now, with its name.
                messages.append(self._start(track_id, sighting, identity))
                seen.add(track_id)
        # Identities decided between frames: their update leaves now, with the latest sighting.
        for track_id in tracked.identities:
            event = self._open.get(track_id)
            if event is not None and event.identity_due and track_id not in seen:
                self._sighting(event, event.face.frame_time)
                messages.append(self._message(event, "update", None))
        for track_id, evidence in tracked.strangers.items():
            event = self._open.get(track_id)
            if event is not None:
                time = frame.capture_time if frame is not None else event.face.frame_time
                notice = StrangerEvent(event.id, self.camera, time, None, event.crop_published)
                self.strangers.append((notice, evidence))
        for track in tracked.ended:
            if track.track_id in self._open:
                messages.append(self._end(track.track_id, track.last_seen))
        return messages

    def end_all(self) -> list[FaceEvent]:
        """End every open event whose track did not end (the daemon is stopping)."""
        return [self._end(track_id, event.face.frame_time) for track_id, event in list(self._open.items())]

    def _sight(self, frame: FrameResult, track: TrackedFace, with_crop: bool = True) -> _Sighting:
        detections, index = frame.detections, track.index
        box = detections.boxes[index].tolist()
        face = FaceObservation(
            frame_time=frame.capture_time,
            box=(box[0], box[1], box[2], box[3]),
            score=float(detections.scores[index]),
            landmarks=tuple((p[0], p[1]) for p in detections.landmarks[index].tolist()),
            landmark_names=detections.landmark_names,
        )
        crop = self._crop(frame, index) if with_crop else None
        return _Sighting(face, crop, frame.frame_size, track.first_seen, track.hits)

    def _crop(self, frame: FrameResult, index: int) -> FaceCrop | None:
        """The face's pixels (with a margin) from the frame's snapshot image, which is only valid now."""
        if frame.snapshot is None:
            return None
        detections = frame.detections
        return self._snapshots.capture(
            frame.snapshot,
            frame.snapshot_scale,
            detections.boxes[index],
            detections.landmarks[index],
            detections.landmark_names,
        )

    def _observe(self, frame: FrameResult, track: TrackedFace, identity: Identity | None) -> FaceEvent | None:
        event = self._open.get(track.track_id)
        if event is None:
            return self._start(track.track_id, self._sight(frame, track), identity, track.confirmed)
        sighting = self._sight(frame, track, with_crop=False)
        event.frames += 1
        event.face = sighting.face
        event.frame_size = sighting.frame_size
        event.confirmed = event.confirmed or track.confirmed
        quality = face_quality(sighting.face)
        if quality > event.best_quality:
            event.best, event.best_quality = sighting.face, quality
            crop = self._crop(frame, track.index)
            if crop is not None:
                event.best_crop, event.crop_published = crop, False
        self._sighting(event, frame.capture_time)
        if not event.identity_due and frame.capture_time - event.last_sent < self._config.update_interval:
            return None
        return self._message(event, "update", None)

    def _start(
        self, track_id: int, sighting: _Sighting, identity: Identity | None, confirmed: bool = False
    ) -> FaceEvent:
        face = sighting.face
        event = _OpenEvent(
            id=new_event_id(sighting.first_seen),
            start_time=sighting.first_seen,
            frame_size=sighting.frame_size,
            frames=sighting.hits,
            face=face,
            best=face,
            best_quality=face_quality(face),
            best_crop=sighting.crop,
            crop_published=False,
            last_sent=face.frame_time,
            identity=identity,
            track_id=track_id,
            confirmed=confirmed,
        )
        self._open[track_id] = event
        self._sighting(event, face.frame_time)
        return self._message(event, "new", None)

    def _sighting(self, event: _OpenEvent, time: float) -> None:
        """A named face was seen: presence."""
        identity = event.identity
        if self._recognition is not None and identity is not None and identity.person_id is not None:
            self._recognition.sighting(identity, self.camera, event.id, time)

    def _end(self, track_id: int, last_seen: float) -> FaceEvent:
        event = self._open.pop(track_id)
        if self._recognition is not None and event.best_crop is not None:
            # The event's best face, aligned, kept for enrolling later (`nvr faces add NAME --event ID`).
            crop = event.best_crop
            aligned = align_face(crop.pixels, crop.landmarks, crop.landmark_names)
            if aligned is not None:
                self._recognition.event_crop(event.id, encode_jpeg(aligned, 112, 90))
        return self._message(event, "end", last_seen)

    def _message(self, event: _OpenEvent, kind: EventType, end_time: float | None) -> FaceEvent:
        snapshot = aligned = None
        if event.best_crop is not None and not event.crop_published:
            # A snapshot goes out only when the best face changed since the last one.
            snapshot = self._snapshots.encode(event.best_crop)
            aligned = self._snapshots.encode_aligned(event.best_crop)
            event.crop_published = True
        event.last_sent = event.face.frame_time
        if event.identity is not None and (event.identity_due or kind == "new"):
            # The latency trace (scripts/bench_recognition.py reads the debug log).
            log.debug(
                "face identity sent", camera=self.camera, event_id=event.id, track=event.track_id,
                type=kind, name=event.identity.name,
            )  # fmt: skip
        event.identity_due = False
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
            identity=event.identity,
        )


def _changed(before: Identity | None, after: Identity) -> bool:
    """A change worth an update: decided, or another person (a new score alone is not news)."""
    return before is None or before.name != after.name or before.person_id != after.person_id
