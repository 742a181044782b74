"""What the tracking stage hands downstream for each processed frame: the frame's faces with their track ids.

One `TrackedFrame` per frame (and one, without a frame, when tracks end because a camera went quiet or the
daemon stops). Stages after tracking (recognition, then events) receive it in order, one camera's frames on
one thread. Recognition attaches who each track is in `identities` (by track id) before passing the frame
on; tracking leaves it empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nvr.contracts.arrays import FloatArray, IndexArray, RgbImage
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.identity import Identity

NOT_TRACKED = -1  # the track id of a detection the tracker ignored (invalid numbers, too small, too unsure)


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """One detection of the frame that continues (or starts) a track."""

    track_id: int
    index: int  # into the frame's `detections`
    first_seen: float  # capture time (epoch s) of the track's first frame
    hits: int  # frames the track has been seen in, this one included
    confirmed: bool  # seen in enough consecutive frames to be a face (only confirmed tracks become events)


@dataclass(frozen=True, slots=True)
class EndedTrack:
    """A confirmed track whose face has been absent long enough (or whose camera stopped)."""

    track_id: int
    first_seen: float
    last_seen: float  # capture time of the last frame the face was seen in
    hits: int


@dataclass(frozen=True, slots=True)
class StrangerEvidence:
    """Why a track is a stranger: the mean of its best embeddings, and its best aligned face (112x112)."""

    embedding: FloatArray
    crop: RgbImage
    model: str  # the embedding model's id


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    camera: str
    # The frame, or None when tracks end without one (camera quiet for `end_after`, or shutting down).
    # Its snapshot image is valid only while the frame is being handled (see FrameResult).
    frame: FrameResult | None
    faces: tuple[TrackedFace, ...] = ()  # the tracked detections, tentative tracks included
    ended: tuple[EndedTrack, ...] = ()
    # Filled downstream of tracking by the recognition stage: who each track is, by track id.
    identities: dict[int, Identity] = field(default_factory=dict)
    # Tracks the recognition stage just decided are strangers (once per track), with the evidence the event
    # stage records them with (it knows the event id).
    strangers: dict[int, StrangerEvidence] = field(default_factory=dict)

    def track_ids(self) -> IndexArray:
        """The track id of each of the frame's detections, `NOT_TRACKED` for those the tracker ignored."""
        count = len(self.frame.detections) if self.frame is not None else 0
        ids = np.full(count, NOT_TRACKED, np.intp)
        for face in self.faces:
            ids[face.index] = face.track_id
        return ids

    @property
    def confirmed(self) -> tuple[TrackedFace, ...]:
        return tuple(face for face in self.faces if face.confirmed)


class TrackSink(Protocol):
    """A stage after tracking (recognition, events)."""

    def handle(self, tracked: TrackedFrame) -> None:
        """Called for every tracked frame of every camera, in order, from one thread."""
        ...
